//! Who the client of a request is, behind load balancers: `TRUSTED_PROXIES` names them, and
//! only when the peer is one of them is `X-Forwarded-For` believed, read from the right (each
//! proxy appends the address it saw) up to the first address that is not a proxy. Anything a
//! client wrote further left is its own claim and is never read.

use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated addresses (`10.0.0.5`, `::1`) or networks (`10.0.0.0/8`).
    fn from_str(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpNet::from_str(s)
                    .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                    .map_err(|_| format!("TRUSTED_PROXIES: {s} is not an address or a CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl std::fmt::Display for TrustedProxies {
    /// The list as `TRUSTED_PROXIES` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&list.join(","))
    }
}

impl TrustedProxies {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client of a request that came from `peer` with these `X-Forwarded-For` values.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.contains(&peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            match IpAddr::from_str(hop) {
                Ok(ip) if self.contains(&ip) => continue,
                Ok(ip) => return ip,
                // Not an address where a proxy wrote one: believe nothing beyond it.
                Err(_) => return peer,
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_forwarded_address_is_believed_only_from_a_trusted_proxy() {
        let p: TrustedProxies = "127.0.0.1, 10.1.0.0/16".parse().unwrap();
        // From a proxy: the right-most address that is not a proxy.
        assert_eq!(
            p.client(ip("127.0.0.1"), ["203.0.113.7"].into_iter()),
            ip("203.0.113.7")
        );
        assert_eq!(
            p.client(
                ip("127.0.0.1"),
                ["198.51.100.1, 203.0.113.7, 10.1.2.3"].into_iter()
            ),
            ip("203.0.113.7"),
            "what the client wrote on the left is not read"
        );
        assert_eq!(
            p.client(ip("127.0.0.1"), ["203.0.113.9", "10.1.0.4"].into_iter()),
            ip("203.0.113.9"),
            "several headers read as one list"
        );
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            p.client(ip("192.0.2.1"), ["203.0.113.7"].into_iter()),
            ip("192.0.2.1")
        );
        // Nothing usable: the peer.
        assert_eq!(
            p.client(ip("127.0.0.1"), std::iter::empty()),
            ip("127.0.0.1")
        );
        assert_eq!(
            p.client(ip("127.0.0.1"), ["unknown"].into_iter()),
            ip("127.0.0.1")
        );
        assert_eq!(
            p.client(ip("127.0.0.1"), ["10.1.9.9"].into_iter()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_list_takes_addresses_and_networks_and_names_a_bad_entry() {
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
        assert!("::1, fd00::/8".parse::<TrustedProxies>().is_ok());
        let e = "10.0.0.1, nonsense".parse::<TrustedProxies>().unwrap_err();
        assert!(e.contains("nonsense"), "{e}");
    }
}
