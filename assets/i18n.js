// Every string both pages show, Korean first (most citizens read Korean; English is one click
// away), and the few formatters that depend on the language. `{name}` marks a value filled in.
const STRINGS = {
  ko: {
    locale: 'ko-KR',
    other_lang_name: 'English',
    skip: '본문으로 건너뛰기',
    nav_label: '바로가기',
    app_title: '백신 사전예약',
    nav_manage: '예약 조회·취소',
    nav_leftovers: '오늘의 잔여백신',
    lo_title: '오늘의 잔여백신',
    lo_lead: '오늘 남은 백신은 신청한 순서대로 한 분씩 안내됩니다. 안내받은 분만 정해진 시간 동안 예약할 수 있습니다.',
    lo_none: '지금은 남은 백신이 없습니다. 그래도 신청해 두면 남는 대로 차례에 안내됩니다.',
    lo_pick: '신청할 센터 (최대 5곳)',
    lo_item: '{name} · {vaccine} · 남은 {n}회분 · {until}까지',
    lo_need_session: '신청하려면 먼저 대상을 골라 본인 확인을 마쳐 주세요.',
    lo_join: '잔여백신 신청',
    lo_pick_some: '센터를 1곳 이상 5곳 이하로 골라 주세요.',
    lo_already: '이미 오늘 잔여백신을 신청하셨습니다.',
    lo_accept: '예약하기',
    lo_decline: '양보하기',
    lo_leave: '신청 취소',
    lo_again: '다시 신청하기',
    lo_state_waiting: '대기 중',
    lo_state_offered: '예약 가능',
    lo_state_booked: '예약됨',
    lo_state_lapsed: '시간 초과',
    lo_state_expired: '오늘 마감',
    lo_state_cancelled: '신청 취소됨',
    lo_position: '내 앞에 {ahead}명 (대기 {n}번)',
    lo_offer: '{center}에서 {vaccine} 1회분을 예약할 수 있습니다.',
    lo_offer_left: '남은 시간 {clock}',
    lo_no_offer: '안내된 백신이 없거나 예약 시간이 지났습니다.',
    lo_no_second: '이 센터에는 2차 접종 자리가 없어 예약할 수 없습니다.',
    loading: '불러오는 중…',
    retry: '다시 시도',
    people: '{n}명',
    places_left: '남은 자리 {n}',
    full: '마감',
    paused: '일시정지됨',
    footer_privacy: '저장하는 것은 본인확인기관이 확인한 신원의 키 해시값, 가린 이름(예: 김*영), 생년월일, 예약 내용입니다. 전체 이름은 저장하지 않습니다. 전화번호는 알림(예약·취소·잔여백신·접종 전날 안내)을 보내기 위해 암호화해서만 보관하며, 유효한 예약의 마지막 접종일이 지나거나 예약을 취소하면, 잔여백신 신청은 그날이 끝나면 삭제하고, 알림 기록에서는 발송되는 즉시 삭제합니다.',

    state_scheduled: '접수 예정',
    state_open: '접수 중',
    state_closed: '마감',
    state_sold_out: '잔여 없음',
    booking_confirmed: '예약됨',
    booking_cancelled: '취소됨',

    cohorts_title: '예약 대상 선택',
    cohorts_lead: '출생연도에 맞는 대상을 골라 대기열에 들어가세요. 순서는 들어온 차례대로 지켜지고, 새로고침해도 유지됩니다.',
    cohorts_none: '지금은 예약을 받는 대상이 없습니다. 안내된 접수 일정을 확인해 주세요.',
    cohort_born: '{from}년 ~ {to}년 출생',
    cohort_interval: '2차 접종은 {days}일 뒤',
    cohort_period: '접수 {from} ~ {to}',
    cohort_join: '대기열 들어가기',
    pow_preparing: '대기열 자리를 준비하는 중… (계산 {n}회)',
    err_pow: '이 브라우저에서 대기열 자리를 준비하지 못했습니다. 페이지를 새로고침하거나 다른 브라우저로 시도해 주세요.',
    cohort_join_early: '미리 대기하기',
    cohort_sold_out_note: '지금은 남은 자리가 없습니다. 대기하시면 취소나 추가 물량이 생길 때 순서대로 안내합니다.',

    queue_title: '대기 중',
    queue_cohort: '{name} 대기열',
    queue_position: '내 순서',
    queue_nth: '{n}번째',
    queue_progress: '대기 진행률',
    queue_progress_text: '{p}% 진행',
    queue_ahead: '앞에',
    queue_behind: '뒤에',
    queue_eta: '예상 대기',
    queue_keep: '이 창을 닫거나 새로고침해도 순서는 그대로입니다. 여러 창을 열 필요가 없습니다.',
    queue_rejoin: '다시 줄 서기',
    queue_leave: '대기 취소하고 처음으로',
    queue_home: '처음으로',
    q_loading: '대기 정보를 확인하고 있습니다…',
    q_pre_queue: '아직 접수 시작 전입니다. 시작하는 순간 미리 대기한 분들의 순서가 공정하게 무작위로 정해지므로, 먼저 접속하려고 서두르실 필요가 없습니다.',
    q_waiting: '차례대로 입장하고 있습니다. 차례가 되면 이 화면이 자동으로 다음 단계로 넘어갑니다.',
    q_waiting_no_eta: '순서는 유지되고 있습니다. 입장 속도를 확인하는 중이라 예상 시간은 잠시 뒤에 표시됩니다.',
    q_admitted: '차례가 되었습니다. 본인 확인으로 넘어갑니다.',
    q_sold_out: '지금은 남은 자리가 없습니다. 취소나 추가 물량이 생기면 순서대로 입장하니, 이 화면을 열어 두시면 자동으로 확인합니다.',
    q_closed: '이 대상의 접수가 마감되었습니다.',
    q_expired: '입장 후 정해진 시간 안에 본인 확인을 하지 않아 입장이 만료되었습니다. 다시 줄을 서 주세요.',
    q_offline: '연결이 잠시 끊겼습니다. 순서는 서버에 그대로 남아 있으니 기다려 주세요. 자동으로 다시 확인합니다.',
    q_opens_in: '접수 시작까지 {clock}',
    q_next_check: '{s}초 뒤 자동으로 다시 확인합니다',
    eta_unknown: '계산 중',
    eta_sold_out: '자리가 생기면',
    eta_none: '대기 없음',

    verify_title: '본인 확인',
    verify_lead: '차례가 되었습니다. 본인 확인 후 접종 장소와 날짜를 고르세요.',
    verify_pass_left: '{clock} 안에 본인 확인을 마쳐 주세요.',
    verify_years: '이 대상은 {from}년 ~ {to}년 출생입니다.',
    verify_submit: '확인하기',
    verify_checking: '본인 확인 중입니다…',
    verify_busy: '본인 확인 요청이 많아 잠시 기다리고 있습니다. 순서는 유지되며 자동으로 다시 시도합니다.',
    verify_offline: '연결이 끊겼습니다. 자동으로 다시 시도합니다.',
    verify_rate_limited: '확인 시도가 너무 많았습니다. {wait} 뒤에 다시 시도해 주세요.',
    verify_rejected: '본인 확인에 실패했습니다. 이름, 생년월일, 휴대전화 번호가 맞는지 확인해 주세요.',
    verify_not_eligible: '이 대상은 {from}년 ~ {to}년에 태어난 분만 예약할 수 있습니다.',
    verify_not_today: '오늘은 예약 차례가 아닙니다. 안내된 생년월일 끝자리 일정을 확인해 주세요. ({message})',
    field_name: '이름',
    field_birth: '생년월일',
    field_birth_hint: '예: 1965-03-01 또는 19650301.',
    field_phone: '휴대전화 번호',
    field_phone_hint: '본인 명의 휴대전화로 확인합니다. 번호는 알림을 위해 암호화해서만 보관합니다.',
    field_code: '예약 번호',
    err_name: '이름을 입력해 주세요.',
    err_birth: '생년월일을 1965-03-01 형식으로 입력해 주세요.',
    err_phone: '010으로 시작하는 휴대전화 번호를 입력해 주세요.',
    err_code: '예약 번호를 입력해 주세요.',

    place_title: '접종 장소와 날짜',
    place_lead: '{vaccine} 접종입니다. 1차 접종일을 고르시면 2차 접종은 {days}일 뒤 같은 기관에 함께 예약됩니다.',
    place_region: '지역',
    place_center: '접종 기관',
    place_date: '1차 접종일',
    place_time: '시간',
    place_next: '다음',
    place_no_centers: '아직 등록된 접종 기관이 없습니다.',
    place_no_second: '2차 접종 자리 없음',
    place_no_slots: '이 기관에는 예약 가능한 날짜가 없습니다. 다른 기관을 골라 주세요.',

    confirm_title: '예약 내용 확인',
    confirm_book: '예약 확정',
    confirm_back: '다른 시간 고르기',
    confirm_booking: '예약하고 있습니다…',
    confirm_retrying: '서버가 바쁘거나 연결이 끊겨 같은 예약 요청을 다시 보냅니다. 두 번 예약되지 않습니다.',
    confirm_second_note: '2차 접종은 1차 접종 {days}일 뒤 같은 기관, 같은 시각으로 잡히며, 그날 자리가 없으면 7일 안의 가장 빠른 시간으로 잡힙니다.',
    sum_cohort: '대상',
    sum_name: '이름',
    sum_vaccine: '백신',
    sum_center: '접종 기관',
    sum_first: '1차 접종',
    sum_second: '2차 접종',
    sum_second_about: '{date} 무렵 (확정 시 안내)',

    done_title: '예약이 완료되었습니다',
    done_code: '예약 번호',
    done_keep: '예약 번호와 생년월일로 언제든 조회하거나 취소할 수 있습니다. 이 화면을 인쇄하거나 예약 번호를 적어 두세요.',
    done_print: '인쇄하기',

    manage_title: '예약 조회·취소',
    manage_lookup: '조회하기',
    manage_cancel: '예약 취소',
    manage_cancel_ask: '1차와 2차 접종 예약이 모두 취소됩니다. 취소하시겠습니까?',
    manage_cancel_yes: '예, 취소합니다',
    manage_cancel_no: '아니요',
    manage_home: '처음으로',
    manage_not_found: '예약 번호와 생년월일이 일치하는 예약이 없습니다. 다시 확인해 주세요.',
    manage_rate_limited: '조회가 너무 많았습니다. {wait} 뒤에 다시 시도해 주세요.',
    manage_cancelled: '예약이 취소되었습니다. 두 번의 접종 자리가 모두 반환되었습니다.',

    retry_in: '{s}초 뒤 자동으로 다시 시도합니다',
    wait_in: '{s}초 뒤 다시 시도할 수 있습니다',
    err_load: '정보를 불러오지 못했습니다.',
    err_network: '연결이 끊겼습니다. 잠시 뒤 다시 시도해 주세요.',
    err_busy: '서버가 바쁩니다. {s}초 뒤 다시 시도해 주세요.',
    err_generic: '요청을 처리하지 못했습니다: {message}',
    err_validation: '입력 내용을 확인해 주세요: {message}',
    err_cohort_closed: '이 대상의 접수가 마감되었습니다.',
    err_ticket_invalid: '대기 정보가 더 이상 유효하지 않습니다. 다시 줄을 서 주세요.',
    err_pass_expired: '입장 시간이 지났습니다. 대기 상태를 다시 확인합니다.',
    err_session_expired: '본인 확인 후 시간이 오래 지났습니다. 다시 확인해 주세요.',
    err_slot_full: '방금 고르신 시간이 다 찼습니다. 다른 시간을 골라 주세요.',
    err_no_second: '이 날짜에는 2차 접종 자리가 없습니다. 다른 날짜나 기관을 골라 주세요.',
    err_wrong_vaccine: '이 시간은 다른 백신 접종입니다. 다른 시간을 골라 주세요.',
    err_already_booked: '이미 예약이 있습니다. 예약 조회에서 확인해 주세요. ({message})',

    admin_title: '사전예약 운영',
    admin_citizen_page: '시민용 화면',
    admin_signout: '로그아웃',
    signin_title: '운영자 로그인',
    signin_token: '관리자 토큰',
    signin_hint: '서버가 처음 시작할 때 로그에 출력한 값이나 ADMIN_TOKEN으로 정한 값입니다. 이 탭을 닫으면 잊습니다.',
    signin_submit: '로그인',
    err_token_empty: '토큰을 입력해 주세요.',
    err_token_wrong: '토큰이 맞지 않습니다.',
    dash_title: '실시간 현황',
    dash_updated: '{time} 갱신 · 3초마다',
    dash_failed: '갱신하지 못했습니다. 다시 시도하는 중입니다.',
    dash_pause: '자동 갱신 멈춤',
    dash_resume: '자동 갱신 다시 시작',
    tile_waiting: '전체 대기',
    tile_confirmed: '확정된 예약',
    tile_cancelled: '취소 {n}',
    tile_rate: '초당 예약',
    tile_rate_sub: '직전 갱신 대비',
    tile_identity: '본인확인 처리 중 / 최대',
    tile_identity_sub: '자리 기다림 {waiting}',
    tile_outcomes: '본인확인 성공',
    tile_outcomes_sub: '거절 {rejected} · 실패 {failed} · 혼잡 {busy}',
    chart_waiting: '대상군별 대기 인원 (최근 3분)',
    chart_bookings: '초당 예약 (최근 3분)',
    chart_identity: '본인확인 풀: 처리 중 / 최대',
    chart_cohorts: '대상군별 대기 · 입장',
    chart_regions: '지역별 남은 자리',
    chart_now: '지금',
    chart_empty: '자료 없음',
    in_flight: '처리 중',
    max_in_flight: '최대',
    cohorts_heading: '대상군',
    cohorts_empty: '아직 대상군이 없습니다. 아래에서 만드세요.',
    centers_heading: '접종 기관',
    centers_empty: '아직 접종 기관이 없습니다.',
    nodes_heading: '서버 노드',
    col_ready: '상태',
    col_last_seen: '마지막 응답',
    col_rps: '요청/초',
    col_in_flight: '처리 중',
    col_identity: '본인 확인',
    node_ready: '정상',
    node_not_ready: '준비 안 됨',
    col_name: '이름',
    col_state: '상태',
    col_waiting: '대기',
    col_admitted: '입장',
    col_verified: '본인확인',
    col_booked: '예약',
    col_rate: '입장률/초 (측정 / 설정)',
    col_eta_back: '맨 뒤 예상 대기',
    col_controls: '조작',
    col_region: '지역',
    col_address: '주소',
    col_remaining: '남은 자리',
    pause: '일시정지',
    resume: '재개',
    pause_named: '{name} 입장 일시정지',
    resume_named: '{name} 입장 재개',
    rate_label: '{name} 입장률 (명/초)',
    rate_set: '적용',
    patched: '{name}: 변경했습니다.',
    err_rate: '입장률은 0보다 커야 합니다.',
    err_offset: '시간대는 +09:00 형식으로 입력해 주세요.',
    cf_title: '대상군 만들기',
    cf_name: '이름',
    cf_from: '출생연도 부터',
    cf_to: '출생연도 까지',
    cf_opens: '접수 시작',
    cf_closes: '접수 마감',
    cf_offset: '시간대 (UTC 기준)',
    cf_offset_hint: '서울은 +09:00',
    cf_vaccine: '백신',
    cf_interval: '접종 간격(일)',
    cf_rate: '입장률 (명/초)',
    cf_submit: '대상군 만들기',
    cf_done: '대상군 "{name}"(#{id})을 만들었습니다.',
    ce_title: '접종 기관 만들기',
    ce_name: '이름',
    ce_region: '지역',
    ce_address: '주소',
    ce_submit: '기관 만들기',
    ce_done: '기관 "{name}"(#{id})을 만들었습니다.',
    sf_title: '슬롯 일괄 생성',
    sf_center: '접종 기관',
    sf_from: '시작일',
    sf_to: '종료일',
    sf_start: '첫 시작 시각',
    sf_end: '마지막 종료 시각',
    sf_every: '슬롯 길이(분)',
    sf_capacity: '슬롯당 인원',
    sf_vaccine: '백신',
    sf_weekends: '주말 포함',
    sf_submit: '슬롯 만들기',
    sf_preview: '{days}일 × {times}개 시간 = 슬롯 {slots}개, 총 {places}명',
    sf_preview_none: '날짜, 시각, 인원을 확인해 주세요.',
    sf_sending: '보내는 중… {done} / {total}',
    sf_done: '슬롯 {n}개를 만들었습니다.',
    sf_failed: '{done}개를 만든 뒤 멈췄습니다: {message}',
  },
  en: {
    locale: 'en-GB',
    other_lang_name: '한국어',
    skip: 'Skip to content',
    nav_label: 'Shortcuts',
    app_title: 'Vaccine pre-booking',
    nav_manage: 'My booking',
    nav_leftovers: 'Leftover doses today',
    lo_title: 'Leftover doses today',
    lo_lead: "Doses left today are offered one person at a time, in sign-up order. Only the person offered may book, for a limited time.",
    lo_none: 'No doses are left right now. Sign up anyway: you are offered one when your turn comes.',
    lo_pick: 'Centers to sign up for (up to 5)',
    lo_item: '{name} · {vaccine} · {n} left · until {until}',
    lo_need_session: 'To sign up, choose your group and verify your identity first.',
    lo_join: 'Sign up for leftover doses',
    lo_pick_some: 'Choose 1 to 5 centers.',
    lo_already: 'You have signed up for leftover doses today already.',
    lo_accept: 'Book it',
    lo_decline: 'Pass it on',
    lo_leave: 'Leave the list',
    lo_again: 'Sign up again',
    lo_state_waiting: 'Waiting',
    lo_state_offered: 'Offered to you',
    lo_state_booked: 'Booked',
    lo_state_lapsed: 'Time ran out',
    lo_state_expired: 'The day ended',
    lo_state_cancelled: 'Left the list',
    lo_position: '{ahead} ahead of you (number {n})',
    lo_offer: 'A dose of {vaccine} is held for you at {center}.',
    lo_offer_left: '{clock} left',
    lo_no_offer: 'No dose is offered to you, or the time ran out.',
    lo_no_second: 'This center has no place for the second dose.',
    loading: 'Loading…',
    retry: 'Try again',
    people: '{n}',
    places_left: '{n} places left',
    full: 'Full',
    paused: 'paused',
    footer_privacy: 'What is kept: a keyed hash of the identity the provider confirmed, your name masked (like 김*영), your date of birth, and your booking. Your full name is not stored. Your phone number is kept only encrypted, to send you notices (booked, cancelled, leftover offers, the day before each dose), and deleted once your booking is cancelled or its last dose day has passed, a leftover sign-up at the end of its day, and from each notice as soon as it is sent.',

    state_scheduled: 'Opens soon',
    state_open: 'Open',
    state_closed: 'Closed',
    state_sold_out: 'No places left',
    booking_confirmed: 'Booked',
    booking_cancelled: 'Cancelled',

    cohorts_title: 'Who is booking?',
    cohorts_lead: 'Pick the group for your year of birth and join its queue. Places are kept in the order people joined, and a reload keeps yours.',
    cohorts_none: 'No group is taking bookings right now. Please check the announced schedule.',
    cohort_born: 'Born {from} to {to}',
    cohort_interval: 'second dose {days} days later',
    cohort_period: 'Bookings {from} to {to}',
    cohort_join: 'Join the queue',
    pow_preparing: 'Preparing your place in line… ({n} hashes tried)',
    err_pow: 'This browser could not prepare your place in line. Reload the page or try another browser.',
    cohort_join_early: 'Wait for opening',
    cohort_sold_out_note: 'No places are left right now. If you wait, you will be let in, in order, when places come back.',

    queue_title: 'In the queue',
    queue_cohort: 'Queue: {name}',
    queue_position: 'Your place',
    queue_nth: '#{n}',
    queue_progress: 'Progress through the queue',
    queue_progress_text: '{p}% of the way',
    queue_ahead: 'Ahead of you',
    queue_behind: 'Behind you',
    queue_eta: 'Expected wait',
    queue_keep: 'Closing or reloading this page keeps your place. There is no need to open more windows.',
    queue_rejoin: 'Join again',
    queue_leave: 'Leave the queue',
    queue_home: 'Back to the start',
    q_loading: 'Checking your place…',
    q_pre_queue: 'Bookings have not opened yet. At opening, everyone already waiting is put in a fair random order, so there is no need to rush to be first.',
    q_waiting: 'People are let in in order. When it is your turn this page moves on by itself.',
    q_waiting_no_eta: 'Your place is kept. The expected wait shows once the pace of the queue is known.',
    q_admitted: 'It is your turn. On to confirming who you are.',
    q_sold_out: 'No places are left right now. If places come back (cancellations or new supply), people are let in in order; keep this page open and it checks by itself.',
    q_closed: 'Bookings for this group have closed.',
    q_expired: 'Your turn came but the identity check was not done in time. Please join the queue again.',
    q_offline: 'The connection dropped for a moment. Your place is kept on the server; this page checks again by itself.',
    q_opens_in: 'Opens in {clock}',
    q_next_check: 'Checking again in {s} s',
    eta_unknown: 'Estimating',
    eta_sold_out: 'when places return',
    eta_none: 'no wait',

    verify_title: 'Confirm who you are',
    verify_lead: 'It is your turn. Confirm who you are, then pick the place and day.',
    verify_pass_left: 'Please finish this step within {clock}.',
    verify_years: 'This group is for people born {from} to {to}.',
    verify_submit: 'Confirm',
    verify_checking: 'Checking…',
    verify_busy: 'Identity checks are busy. Your place is kept and this page tries again by itself.',
    verify_offline: 'The connection dropped. Trying again by itself.',
    verify_rate_limited: 'Too many attempts. Please try again in {wait}.',
    verify_rejected: 'These details could not be confirmed. Please check your name, date of birth and phone number.',
    verify_not_eligible: 'This group is only for people born {from} to {to}.',
    verify_not_today: 'Today is not your day to book; please check the schedule by the last digit of your birth day. ({message})',
    field_name: 'Name',
    field_birth: 'Date of birth',
    field_birth_hint: 'For example 1965-03-01 or 19650301.',
    field_phone: 'Mobile phone number',
    field_phone_hint: 'Checked with your mobile carrier. The number is kept only encrypted, for notices.',
    field_code: 'Booking code',
    err_name: 'Please enter your name.',
    err_birth: 'Please enter your date of birth as 1965-03-01.',
    err_phone: 'Please enter a mobile number starting 010.',
    err_code: 'Please enter the booking code.',

    place_title: 'Place and day',
    place_lead: 'Vaccine: {vaccine}. Pick the day of your first dose; the second is booked with it at the same center {days} days later.',
    place_region: 'Region',
    place_center: 'Vaccination center',
    place_date: 'Day of the first dose',
    place_time: 'Time',
    place_next: 'Next',
    place_no_centers: 'No vaccination center has been added yet.',
    place_no_second: 'no place for the second dose',
    place_no_slots: 'This center has no day left to book. Please pick another center.',

    confirm_title: 'Check your booking',
    confirm_book: 'Book',
    confirm_back: 'Pick another time',
    confirm_booking: 'Booking…',
    confirm_retrying: 'The server is busy or the connection dropped; sending the same request again. You will not be booked twice.',
    confirm_second_note: 'The second dose is booked {days} days after the first, at the same center and time, or else at the earliest free time within the 7 days after.',
    sum_cohort: 'Group',
    sum_name: 'Name',
    sum_vaccine: 'Vaccine',
    sum_center: 'Center',
    sum_first: 'First dose',
    sum_second: 'Second dose',
    sum_second_about: 'around {date} (confirmed when you book)',

    done_title: 'You are booked',
    done_code: 'Booking code',
    done_keep: 'With the booking code and your date of birth you can look the booking up or cancel it at any time. Print this page or write the code down.',
    done_print: 'Print',

    manage_title: 'Find or cancel a booking',
    manage_lookup: 'Find',
    manage_cancel: 'Cancel the booking',
    manage_cancel_ask: 'Both doses will be cancelled. Cancel the booking?',
    manage_cancel_yes: 'Yes, cancel',
    manage_cancel_no: 'No',
    manage_home: 'Back to the start',
    manage_not_found: 'No booking matches this code and date of birth. Please check them.',
    manage_rate_limited: 'Too many look-ups. Please try again in {wait}.',
    manage_cancelled: 'The booking is cancelled and both places were given back.',

    retry_in: 'Trying again in {s} s',
    wait_in: 'You can try again in {s} s',
    err_load: 'This could not be loaded.',
    err_network: 'The connection dropped. Please try again in a moment.',
    err_busy: 'The server is busy. Please try again in {s} s.',
    err_generic: 'That did not work: {message}',
    err_validation: 'Please check what you entered: {message}',
    err_cohort_closed: 'Bookings for this group have closed.',
    err_ticket_invalid: 'Your place in the queue is no longer valid. Please join again.',
    err_pass_expired: 'Your turn has lapsed. Checking the queue again.',
    err_session_expired: 'It has been a while since you confirmed who you are. Please confirm again.',
    err_slot_full: 'The time you picked has just filled up. Please pick another.',
    err_no_second: 'There is no place for the second dose after this day. Please pick another day or center.',
    err_wrong_vaccine: 'That time is for another vaccine. Please pick another.',
    err_already_booked: 'You already hold a booking; find it under "My booking". ({message})',

    admin_title: 'Booking operations',
    admin_citizen_page: 'Citizens\u2019 page',
    admin_signout: 'Sign out',
    signin_title: 'Operator sign-in',
    signin_token: 'Admin token',
    signin_hint: 'Printed in the log at the server\u2019s first start, or set with ADMIN_TOKEN. Forgotten when this tab closes.',
    signin_submit: 'Sign in',
    err_token_empty: 'Please enter the token.',
    err_token_wrong: 'That token is not right.',
    dash_title: 'Live figures',
    dash_updated: 'Updated {time} · every 3 s',
    dash_failed: 'Could not update; trying again.',
    dash_pause: 'Pause updates',
    dash_resume: 'Resume updates',
    tile_waiting: 'Waiting, all groups',
    tile_confirmed: 'Live bookings',
    tile_cancelled: '{n} cancelled',
    tile_rate: 'Bookings per second',
    tile_rate_sub: 'since the last update',
    tile_identity: 'Identity checks in flight / cap',
    tile_identity_sub: '{waiting} waiting for a place',
    tile_outcomes: 'Identities vouched',
    tile_outcomes_sub: 'rejected {rejected} · failed {failed} · busy {busy}',
    chart_waiting: 'Waiting per group (last 3 min)',
    chart_bookings: 'Bookings per second (last 3 min)',
    chart_identity: 'Identity pool: in flight / cap',
    chart_cohorts: 'Waiting and admitted per group',
    chart_regions: 'Places left by region',
    chart_now: 'now',
    chart_empty: 'no data',
    in_flight: 'in flight',
    max_in_flight: 'cap',
    cohorts_heading: 'Groups',
    cohorts_empty: 'No group yet. Create one below.',
    centers_heading: 'Vaccination centers',
    centers_empty: 'No center yet.',
    nodes_heading: 'Server nodes',
    col_ready: 'State',
    col_last_seen: 'Last seen',
    col_rps: 'Requests/s',
    col_in_flight: 'In flight',
    col_identity: 'Identity checks',
    node_ready: 'ready',
    node_not_ready: 'not ready',
    col_name: 'Name',
    col_state: 'State',
    col_waiting: 'Waiting',
    col_admitted: 'Admitted',
    col_verified: 'Verified',
    col_booked: 'Booked',
    col_rate: 'Admissions/s (measured / set)',
    col_eta_back: 'Wait at the back',
    col_controls: 'Controls',
    col_region: 'Region',
    col_address: 'Address',
    col_remaining: 'Places left',
    pause: 'Pause',
    resume: 'Resume',
    pause_named: 'Pause admissions to {name}',
    resume_named: 'Resume admissions to {name}',
    rate_label: 'Admission rate of {name} (per second)',
    rate_set: 'Set',
    patched: '{name}: changed.',
    err_rate: 'The admission rate must be above 0.',
    err_offset: 'Please give the zone as +09:00.',
    cf_title: 'New group',
    cf_name: 'Name',
    cf_from: 'Born from (year)',
    cf_to: 'Born to (year)',
    cf_opens: 'Opens',
    cf_closes: 'Closes',
    cf_offset: 'Zone (from UTC)',
    cf_offset_hint: 'Seoul is +09:00',
    cf_vaccine: 'Vaccine',
    cf_interval: 'Days between doses',
    cf_rate: 'Admissions per second',
    cf_submit: 'Create group',
    cf_done: 'Group "{name}" (#{id}) created.',
    ce_title: 'New center',
    ce_name: 'Name',
    ce_region: 'Region',
    ce_address: 'Address',
    ce_submit: 'Create center',
    ce_done: 'Center "{name}" (#{id}) created.',
    sf_title: 'Generate slots',
    sf_center: 'Center',
    sf_from: 'First day',
    sf_to: 'Last day',
    sf_start: 'First start',
    sf_end: 'Last end',
    sf_every: 'Slot length (min)',
    sf_capacity: 'Places per slot',
    sf_vaccine: 'Vaccine',
    sf_weekends: 'Include weekends',
    sf_submit: 'Create slots',
    sf_preview: '{days} days × {times} times = {slots} slots, {places} places',
    sf_preview_none: 'Check the days, times and places.',
    sf_sending: 'Sending… {done} / {total}',
    sf_done: '{n} slots created.',
    sf_failed: 'Stopped after {done}: {message}',
  },
};

const KEY_LANG = 'rsv.lang';

function savedLang() {
  try {
    const l = globalThis.localStorage?.getItem(KEY_LANG);
    return l in STRINGS ? l : 'ko';
  } catch {
    return 'ko';
  }
}

let lang = savedLang();

export const languages = Object.keys(STRINGS);
export const dictionary = STRINGS;
export const currentLang = () => lang;

/** The string for `key` with `{name}` filled from `vars`; the key itself if it is missing. */
export function t(key, vars = {}) {
  const s = STRINGS[lang][key] ?? STRINGS.ko[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

/** Fills every `data-i18n` element and `data-i18n-attr="attr:key,..."` attribute on the page. */
export function applyStatic(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(',')) {
      const [attr, key] = pair.split(':');
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
  document.title = t(document.body.classList.contains('admin') ? 'admin_title' : 'app_title');
}

/** The switch offers the other language, labelled in that language (how people look for it). */
export function initLangSwitch(button, onChange) {
  const label = () => {
    button.textContent = STRINGS[lang].other_lang_name;
    button.lang = lang === 'ko' ? 'en' : 'ko';
  };
  label();
  button.addEventListener('click', () => {
    lang = lang === 'ko' ? 'en' : 'ko';
    try {
      localStorage.setItem(KEY_LANG, lang);
    } catch {
      // Not remembered; the switch still works for this visit.
    }
    label();
    onChange();
  });
}

export function fmtNum(n, digits = 0) {
  return new Intl.NumberFormat(t('locale'), { maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(n ?? 0);
}

/** YYYY-MM-DD as a day people read, with its weekday (read in UTC so no zone can shift it). */
export function fmtDate(ymd, { year = true } = {}) {
  const [y, m, d] = ymd.split('-').map(Number);
  const date = new Date(Date.UTC(y, m - 1, d));
  const weekday = new Intl.DateTimeFormat(t('locale'), { weekday: 'short', timeZone: 'UTC' }).format(date);
  if (lang === 'ko') return `${year ? `${y}년 ` : ''}${m}월 ${d}일 (${weekday})`;
  const rest = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: year ? 'numeric' : undefined, timeZone: 'UTC' }).format(date);
  return `${weekday} ${rest}`;
}

/** An RFC 3339 instant on the server's own wall clock (the zone it was given in). */
export function fmtWhen(rfc3339) {
  return `${fmtDate(rfc3339.slice(0, 10))} ${rfc3339.slice(11, 16)}`;
}

/** YYYY-MM-DD plus `days`. */
export function addDays(ymd, days) {
  const d = new Date(`${ymd}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** A wait in words, rounded as people say it. */
export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const ko = lang === 'ko';
  if (s < 60) return ko ? '1분 미만' : 'under a minute';
  const minutes = Math.round(s / 60);
  if (minutes < 60) return ko ? `약 ${minutes}분` : `about ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  if (ko) return `약 ${hours}시간${rest ? ` ${rest}분` : ''}`;
  return `about ${hours} h${rest ? ` ${rest} min` : ''}`;
}

/** A countdown as H:MM:SS (or M:SS under an hour). */
export function fmtClock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hh ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}
