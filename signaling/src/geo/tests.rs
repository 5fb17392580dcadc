//! Unit tests of the parent module.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::proxy::X_FORWARDED_FOR;
use super::*;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn point(lat: f64, lon: f64) -> LatLon {
    LatLon::new(lat, lon).expect("test coordinates")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

fn proxies(list: &[&str]) -> TrustedProxies {
    let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    TrustedProxies::parse(&list).expect("test proxy list")
}

fn location(country: Option<&str>, region: Option<&str>, coords: Option<LatLon>) -> Location {
    Location {
        country: country.map(str::to_string),
        region: region.map(str::to_string),
        coords,
    }
}

#[test]
fn latlon_new_validates_ranges() {
    #[rustfmt::skip]
    let rows = [
        (0.0, 0.0, true),
        (90.0, 180.0, true),
        (-90.0, -180.0, true),
        (90.0001, 0.0, false),
        (-90.0001, 0.0, false),
        (0.0, 180.0001, false),
        (0.0, -180.0001, false),
        (f64::NAN, 0.0, false),
        (0.0, f64::NAN, false),
        (f64::INFINITY, 0.0, false),
        (0.0, f64::NEG_INFINITY, false),
    ];
    for (lat, lon, ok) in rows {
        assert_eq!(LatLon::new(lat, lon).is_some(), ok, "({lat}, {lon})");
    }
}

#[test]
fn great_circle_matches_known_city_pairs() {
    let paris = point(48.8566, 2.3522);
    let london = point(51.5074, -0.1278);
    let frankfurt = point(50.1109, 8.6821);
    let new_york = point(40.7128, -74.0060);
    let los_angeles = point(34.0522, -118.2437);
    let sydney = point(-33.8688, 151.2093);
    let tokyo = point(35.6762, 139.6503);
    // (a, b, expected km, tolerance km): published great-circle distances; antipodes are
    // half the circumference, pi * R.
    #[rustfmt::skip]
    let rows = [
        (paris, london, 344.0, 1.0),
        (paris, frankfurt, 478.0, 1.0),
        (new_york, los_angeles, 3936.0, 2.0),
        (sydney, tokyo, 7826.0, 3.0),
        (point(0.0, 0.0), point(0.0, 180.0), 20015.1, 0.5),
        (point(90.0, 0.0), point(-90.0, 0.0), 20015.1, 0.5),
        (point(45.0, 10.0), point(-45.0, -170.0), 20015.1, 0.5),
        // Across the antimeridian is the short way, not round the world.
        (point(0.0, 179.5), point(0.0, -179.5), 111.2, 0.2),
        (paris, paris, 0.0, 1e-9),
    ];
    for (a, b, want, tol) in rows {
        let got = great_circle_km(a, b);
        assert!(
            (got - want).abs() <= tol,
            "{a:?}-{b:?}: {got} km, want {want}"
        );
        let back = great_circle_km(b, a);
        assert!((got - back).abs() < 1e-6, "not symmetric: {got} vs {back}");
    }
}

const DB: &str = "\
# network,country,region,latitude,longitude
network,country,region,latitude,longitude
0.0.0.0/0,,,,
10.0.0.0/8,US,us-east,40.7128,-74.0060
10.1.0.0/16,FR,eu-west,48.8566,2.3522
10.1.2.0/24,DE,eu-central,50.1109,8.6821   # Frankfurt
10.1.2.3,GB,,,
::ffff:192.0.2.0/120,JP,ap-northeast,,

2001:db8::/32,nl,EU-West,,
2001:db8:1::/48,IR,,35.6892,51.3890
2001:db8:1::1/128,XX,,,
";

#[test]
fn geoip_longest_prefix_wins() {
    let db = GeoIpDb::parse(DB).expect("parse");
    assert_eq!(db.len(), 9);
    assert!(!db.is_empty());
    // (address, expected country; None for no entry or an entry without a country)
    #[rustfmt::skip]
    let rows = [
        ("10.1.2.3",          Some("GB")),
        ("10.1.2.4",          Some("DE")),
        ("10.1.3.1",          Some("FR")),
        ("10.200.0.1",        Some("US")),
        ("11.0.0.1",          None), // only 0.0.0.0/0, which has no country
        // IPv4-mapped IPv6 looks up as IPv4.
        ("::ffff:10.1.2.3",   Some("GB")),
        ("::ffff:10.1.3.1",   Some("FR")),
        // A mapped network in the file is stored as the IPv4 network 192.0.2.0/24.
        ("192.0.2.77",        Some("JP")),
        ("::ffff:192.0.2.77", Some("JP")),
        ("192.0.3.1",         None),
        ("2001:db8::5",       Some("NL")),
        ("2001:db8:1::2",     Some("IR")),
        // XX in the file means unknown, not a country called XX.
        ("2001:db8:1::1",     None),
        ("2001:db9::1",       None),
    ];
    for (addr, country) in rows {
        let got = db.lookup(ip(addr));
        let got_country = got.as_ref().and_then(|l| l.country.as_deref());
        assert_eq!(got_country, country, "{addr}: {got:?}");
    }
    // 0.0.0.0/0 matches every IPv4 address but no IPv6 one.
    assert_eq!(db.lookup(ip("11.0.0.1")), Some(Location::default()));
    assert_eq!(db.lookup(ip("2001:db9::1")), None);

    let de = db.lookup(ip("10.1.2.200")).expect("10.1.2.0/24");
    assert_eq!(
        de,
        location(Some("DE"), Some("eu-central"), Some(point(50.1109, 8.6821)))
    );
    let nl = db.lookup(ip("2001:db8::5")).expect("2001:db8::/32");
    assert_eq!(
        nl,
        location(Some("NL"), Some("eu-west"), None),
        "case normalised"
    );
}

#[test]
fn geoip_accepts_crlf_bom_and_comment_only_text() {
    let db = GeoIpDb::parse("\u{feff}10.0.0.0/8,FR,,,\r\n\r\n# only a comment\r\n").expect("parse");
    assert_eq!(db.len(), 1);
    let fr = db.lookup(ip("10.9.9.9")).and_then(|l| l.country);
    assert_eq!(fr.as_deref(), Some("FR"));
    let empty = GeoIpDb::parse("# nothing\n\n").expect("parse");
    assert!(empty.is_empty());
    assert_eq!(empty.lookup(ip("10.0.0.1")), None);
}

#[test]
fn geoip_errors_name_the_line_and_the_problem() {
    // (text, line, fragment of the message)
    #[rustfmt::skip]
    let rows = [
        ("bogus,FR,,,", 1, "network: \"bogus\" is not an IP address"),
        ("# c\n\n10.0.0.0/8,FR,,,\n10.0.0.0/33,FR,,,", 4, "prefix length \"33\" is not a number from 0 to 32"),
        ("2001:db8::/129,,,,", 1, "from 0 to 128"),
        ("10.0.0.0/+8,,,,", 1, "prefix length \"+8\""),
        ("10.0.0.0/x,,,,", 1, "prefix length \"x\""),
        ("10.0.0.1/8,FR,,,", 1, "host bits set (did you mean 10.0.0.0/8?)"),
        ("2001:db8::1/32,,,,", 1, "did you mean 2001:db8::/32?"),
        ("10.0.0.0/8,FR,,", 1, "expected 5 comma-separated fields (network,country,region,latitude,longitude), found 4"),
        ("10.0.0.0/8,FR,,,,", 1, "found 6"),
        ("10.0.0.0/8", 1, "found 1"),
        ("10.0.0.0/8,FRA,,,", 1, "country \"FRA\" is not a two-letter ISO 3166-1 code"),
        ("10.0.0.0/8,F1,,,", 1, "country \"F1\""),
        ("10.0.0.0/8,,eu west,,", 1, "region \"eu west\""),
        ("10.0.0.0/8,,,48.8,", 1, "latitude and longitude must be given together"),
        ("10.0.0.0/8,,,,2.3", 1, "latitude and longitude must be given together"),
        ("10.0.0.0/8,,,91,0", 1, "coordinates \"91\",\"0\""),
        ("10.0.0.0/8,,,north,0", 1, "coordinates \"north\""),
        ("10.0.0.0/8,,,NaN,0", 1, "coordinates \"NaN\""),
        ("\n10.0.0.0/8,FR,,,\n10.0.0.0/8,DE,,,", 3, "network 10.0.0.0/8 is already listed on line 2"),
        // The mapped and the plain spelling are one network.
        ("10.0.0.0/8,FR,,,\n::ffff:10.0.0.0/104,DE,,,", 2, "already listed on line 1"),
        // A header row is only skipped as the first data line.
        ("10.0.0.0/8,FR,,,\nnetwork,country,region,latitude,longitude", 2, "\"network\""),
    ];
    for (text, line, fragment) in rows {
        let err = GeoIpDb::parse(text).expect_err(text);
        let message = err.to_string();
        assert!(
            matches!(err, GeoError::Line { line: l, .. } if l == line),
            "{text:?}: {message}"
        );
        assert!(
            message.starts_with(&format!("geoip database line {line}: ")),
            "{message}"
        );
        assert!(message.contains(fragment), "{text:?}: {message}");
    }
}

#[test]
fn geoip_error_quotes_are_bounded() {
    let long = "x".repeat(10_000);
    let message = GeoIpDb::parse(&format!("{long},,,,"))
        .expect_err("bad")
        .to_string();
    assert!(
        message.len() < 200,
        "{} bytes: {message:.300}",
        message.len()
    );
}

#[test]
fn geoip_load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("stratus-geo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.csv");
    std::fs::write(&good, DB).expect("write");
    assert_eq!(GeoIpDb::load(&good).expect("load").len(), 9);

    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "10.0.0.0/8,FR,,,\n10.0.0.0/8,oops,,,\n").expect("write");
    let err = GeoIpDb::load(&bad).expect_err("bad line");
    let message = err.to_string();
    assert!(matches!(&err, GeoError::FileLine { path, line: 2, .. } if path == &bad));
    assert!(
        message.contains("bad.csv, line 2: country \"oops\""),
        "{message}"
    );

    let missing = dir.join("missing.csv");
    let err = GeoIpDb::load(&missing).expect_err("missing file");
    let message = err.to_string();
    assert!(matches!(&err, GeoError::Io { path, .. } if path == &missing));
    assert!(
        message.starts_with("cannot read geoip database "),
        "{message}"
    );
    assert!(message.contains("missing.csv"), "{message}");

    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn geoip_lookup_is_fast_on_a_large_database() {
    // 131,072 networks at four prefix lengths, IPv4 and IPv6. A linear scan per lookup
    // would take minutes; the requirement is thousands of lookups per second.
    let mut text = String::new();
    for i in 0u32..32_768 {
        let [a, b, _, _] = (i << 16).to_be_bytes();
        text.push_str(&format!("{a}.{b}.0.0/16,FR,,,\n"));
        text.push_str(&format!("{a}.{b}.{}.0/24,DE,,,\n", i % 256));
        text.push_str(&format!("2001:{i:x}::/32,NL,,,\n"));
        text.push_str(&format!("2001:{i:x}:{:x}::/48,IR,,,\n", i % 97));
    }
    let db = GeoIpDb::parse(&text).expect("parse");
    assert_eq!(db.len(), 131_072);

    let start = std::time::Instant::now();
    let mut found = 0usize;
    for i in 0u32..100_000 {
        let v4 = Ipv4Addr::from(i.wrapping_mul(2_654_435_761));
        let v6 = Ipv6Addr::new(0x2001, (i % 40_000) as u16, (i % 97) as u16, 0, 0, 0, 0, 1);
        found += usize::from(db.lookup(IpAddr::V4(v4)).is_some());
        found += usize::from(db.lookup(IpAddr::V6(v6)).is_some());
    }
    let elapsed = start.elapsed();
    assert!(found > 100_000, "lookups found {found}");
    // 200,000 lookups; 20 s would still be 10,000 per second.
    assert!(elapsed.as_secs() < 20, "200k lookups took {elapsed:?}");
}

#[test]
fn trusted_proxies_parse_and_contain() {
    let trusted = proxies(&["10.0.0.0/8", " 192.0.2.1 ", "2001:db8:ffff::/48", "::1"]);
    #[rustfmt::skip]
    let rows = [
        ("10.0.0.1", true),
        ("10.255.255.255", true),
        ("11.0.0.1", false),
        ("192.0.2.1", true),
        ("192.0.2.2", false),
        ("::ffff:10.0.0.1", true), // a dual-stack socket's view of an IPv4 proxy
        ("::ffff:192.0.2.2", false),
        ("2001:db8:ffff::1", true),
        ("2001:db8:fffe::1", false),
        ("::1", true),
        ("127.0.0.1", false),
    ];
    for (addr, want) in rows {
        assert_eq!(trusted.contains(ip(addr)), want, "{addr}");
    }
    let none = TrustedProxies::default();
    assert!(none.is_empty());
    assert!(!none.contains(ip("10.0.0.1")));
    assert!(!none.contains(ip("::1")));
}

#[test]
fn trusted_proxies_reject_bad_entries() {
    // (list, index of the bad entry, fragment of the message)
    #[rustfmt::skip]
    let rows: [(&[&str], usize, &str); 4] = [
        (&["10.0.0.0/8", "localhost"], 1, "(\"localhost\"): \"localhost\" is not an IP address"),
        (&["10.0.0.0/40"], 0, "prefix length \"40\" is not a number from 0 to 32"),
        (&["10.0.0.1/8"], 0, "host bits set"),
        (&[""], 0, "is not an IP address"),
    ];
    for (list, index, fragment) in rows {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        let err = TrustedProxies::parse(&list).expect_err("bad entry");
        let message = err.to_string();
        assert!(
            matches!(err, GeoError::Proxy { index: i, .. } if i == index),
            "{message}"
        );
        assert!(
            message.starts_with(&format!("trusted proxy entry {index} ")),
            "{message}"
        );
        assert!(message.contains(fragment), "{list:?}: {message}");
    }
}

/// (case, TCP peer, `X-Forwarded-For` headers in order, expected client address)
type ClientIpRow<'a> = (&'a str, &'a str, &'a [&'a str], &'a str);

#[test]
fn client_ip_walks_forwarded_for_from_trusted_peers_only() {
    let trusted = proxies(&["10.0.0.0/8", "192.0.2.1", "2001:db8:ffff::/48"]);
    #[rustfmt::skip]
    let rows: &[ClientIpRow] = &[
        ("untrusted peer, spoofed header", "203.0.113.9",      &["198.51.100.7"], "203.0.113.9"),
        ("untrusted peer names a proxy",   "203.0.113.9",      &["10.0.0.2"], "203.0.113.9"),
        ("untrusted v6 peer",              "2001:db8:1::9",    &["198.51.100.7"], "2001:db8:1::9"),
        ("trusted peer, no header",        "10.0.0.1",         &[], "10.0.0.1"),
        ("one hop",                        "10.0.0.1",         &["198.51.100.7"], "198.51.100.7"),
        ("spoofed leftmost entry",         "10.0.0.1",         &["6.6.6.6, 198.51.100.7, 10.0.0.2"], "198.51.100.7"),
        ("spoofed entry, own header",      "10.0.0.1",         &["6.6.6.6", "198.51.100.7, 10.0.0.2"], "198.51.100.7"),
        ("hops over several headers",      "10.0.0.1",         &["6.6.6.6, 198.51.100.7", "10.0.0.3", "10.0.0.2"], "198.51.100.7"),
        ("garbage, client and proxy",      "10.0.0.1",         &["198.51.100.7, garbage, 10.0.0.2"], "10.0.0.2"),
        ("garbage rightmost",              "10.0.0.1",         &["198.51.100.7, not-an-ip"], "10.0.0.1"),
        ("garbage header rightmost",       "10.0.0.1",         &["198.51.100.7", "unknown"], "10.0.0.1"),
        ("garbage left of client",         "10.0.0.1",         &["junk, 198.51.100.7"], "198.51.100.7"),
        ("empty entry",                    "10.0.0.1",         &["198.51.100.7,,10.0.0.2"], "10.0.0.2"),
        ("empty header",                   "10.0.0.1",         &[""], "10.0.0.1"),
        ("every hop trusted",              "10.0.0.1",         &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        ("single-host proxy",              "192.0.2.1",        &["198.51.100.7, 192.0.2.2"], "192.0.2.2"),
        ("v4 with port",                   "10.0.0.1",         &["198.51.100.7:5678"], "198.51.100.7"),
        ("v6 with port",                   "10.0.0.1",         &["[2001:db8::1]:443"], "2001:db8::1"),
        ("v6 in brackets",                 "10.0.0.1",         &["[2001:db8::1]"], "2001:db8::1"),
        ("bad port is garbage",            "10.0.0.1",         &["198.51.100.7:99999"], "10.0.0.1"),
        ("v6 peer and hop",                "2001:db8:ffff::1", &["2001:db8:1::5"], "2001:db8:1::5"),
        ("v6 proxy chain",                 "2001:db8:ffff::1", &["2001:db8:1::5, [2001:db8:ffff::2]:80"], "2001:db8:1::5"),
        ("mapped peer",                    "::ffff:10.0.0.1",  &["198.51.100.7"], "198.51.100.7"),
        ("mapped peer, no header",         "::ffff:10.0.0.1",  &[], "10.0.0.1"),
        ("mapped proxy hop",               "10.0.0.1",         &["198.51.100.7, ::ffff:10.0.0.2"], "198.51.100.7"),
        ("mapped client",                  "10.0.0.1",         &["::ffff:198.51.100.7"], "198.51.100.7"),
    ];
    for (case, peer, xff, want) in rows {
        let pairs: Vec<_> = xff.iter().map(|v| ("X-Forwarded-For", *v)).collect();
        let got = client_ip(ip(peer), &headers(&pairs), &trusted);
        assert_eq!(got, ip(want), "{case}");
    }
}

#[test]
fn client_ip_treats_non_ascii_header_as_garbage() {
    let trusted = proxies(&["10.0.0.0/8"]);
    let mut map = headers(&[("x-forwarded-for", "198.51.100.7")]);
    let latin1 = HeaderValue::from_bytes(b"203.0.113.5\xff").expect("obs-text is allowed");
    map.append(X_FORWARDED_FOR, latin1);
    assert_eq!(client_ip(ip("10.0.0.1"), &map, &trusted), ip("10.0.0.1"));
}

/// (case, headers, expected country, region, whether coordinates are expected)
type HeaderRow<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    Option<&'a str>,
    bool,
);

#[test]
fn location_headers_are_validated_field_by_field() {
    let long_region = "a".repeat(65);
    let all = [
        ("X-Client-Country", "FR"),
        ("X-Client-Region", "eu-west"),
        ("X-Client-Lat", "48.8566"),
        ("X-Client-Lon", "2.3522"),
    ];
    #[rustfmt::skip]
    let rows: &[HeaderRow] = &[
        ("nothing",                  &[], None, None, false),
        ("all fields",               &all, Some("FR"), Some("eu-west"), true),
        ("case normalised",          &[("x-client-country", " fr "), ("x-client-region", "EU-West")], Some("FR"), Some("eu-west"), false),
        ("three letters",            &[("X-Client-Country", "FRA")], None, None, false),
        ("digit",                    &[("X-Client-Country", "F1")], None, None, false),
        ("unknown marker XX",        &[("X-Client-Country", "XX")], None, None, false),
        ("tor marker T1",            &[("X-Client-Country", "T1")], None, None, false),
        ("bad country, good region", &[("X-Client-Country", "France"), ("X-Client-Region", "eu-west")], None, Some("eu-west"), false),
        ("region with space",        &[("X-Client-Region", "eu west")], None, None, false),
        ("region too long",          &[("X-Client-Region", &long_region)], None, None, false),
        ("latitude alone",           &[("X-Client-Lat", "48.8")], None, None, false),
        ("NaN",                      &[("X-Client-Lat", "NaN"), ("X-Client-Lon", "2")], None, None, false),
        ("infinite",                 &[("X-Client-Lat", "inf"), ("X-Client-Lon", "2")], None, None, false),
        ("out of range",             &[("X-Client-Lat", "91"), ("X-Client-Lon", "2")], None, None, false),
        ("bad coords, good country", &[("X-Client-Country", "FR"), ("X-Client-Lat", "x"), ("X-Client-Lon", "2")], Some("FR"), None, false),
        ("repeated country",         &[("X-Client-Country", "US"), ("X-Client-Country", "IR"), ("X-Client-Region", "eu-west")], None, Some("eu-west"), false),
    ];
    for (case, pairs, country, region, has_coords) in rows {
        let coords = has_coords.then(|| point(48.8566, 2.3522));
        let want = Some(location(*country, *region, coords)).filter(|l| !l.is_unknown());
        assert_eq!(location_from_headers(&headers(pairs)), want, "{case}");
    }
}

#[test]
fn resolve_location_ignores_untrusted_headers_and_fills_from_db() {
    let db = GeoIpDb::parse(
        "203.0.113.0/24,US,us-east,40.7128,-74.0060\n\
         198.51.100.0/24,FR,eu-west,48.8566,2.3522\n\
         10.0.0.0/8,DE,eu-central,,\n",
    )
    .expect("parse");
    let trusted = proxies(&["10.0.0.0/8"]);
    let new_york = Some(point(40.7128, -74.0060));
    let us = location(Some("US"), Some("us-east"), new_york);
    let fr = location(Some("FR"), Some("eu-west"), Some(point(48.8566, 2.3522)));
    let spoof = [
        ("X-Forwarded-For", "198.51.100.7"),
        ("X-Client-Country", "FR"),
        ("X-Client-Region", "eu-west"),
    ];
    let db = Some(&db);
    // (case, peer, headers, database, expected address, expected location)
    #[rustfmt::skip]
    let rows = [
        ("untrusted peer spoofing all", "203.0.113.9", &spoof[..], db, "203.0.113.9", us.clone()),
        ("untrusted peer, no db",       "203.0.113.9", &spoof[..], None, "203.0.113.9", Location::default()),
        ("trusted proxy, db only",      "10.0.0.1", &[("X-Forwarded-For", "198.51.100.7")], db, "198.51.100.7", fr),
        ("proxy headers win, db fills", "10.0.0.1", &[("X-Forwarded-For", "203.0.113.9"), ("X-Client-Country", "CA")], db, "203.0.113.9", location(Some("CA"), Some("us-east"), new_york)),
        ("proxy headers, no db",        "10.0.0.1", &[("X-Client-Region", "eu-north")], None, "10.0.0.1", location(None, Some("eu-north"), None)),
        ("client not in db",            "10.0.0.1", &[("X-Forwarded-For", "192.0.2.1")], db, "192.0.2.1", Location::default()),
    ];
    for (case, peer, pairs, db, want_ip, want_location) in rows {
        let (got_ip, got_location) = resolve_location(ip(peer), &headers(pairs), &trusted, db);
        assert_eq!(got_ip, ip(want_ip), "{case}");
        assert_eq!(got_location, want_location, "{case}");
    }
}
