DROP TABLE bookings;
DROP TABLE citizens;
DROP TABLE slots;
DROP TABLE centers;
DROP TABLE pass_claims;
DROP TABLE admissions;
DROP TABLE cohorts;
