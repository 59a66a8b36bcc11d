//! Bad input never crashes the appliance and never loses good data: each
//! bad record is dropped and counted with its reason, and every good
//! record around it arrives exactly.
//!
//! How: good records (connection 0, consecutive sequence numbers) are
//! interleaved with garbage on the same real connection or socket; the
//! per-reason counters must equal what was injected, and the sink must
//! hold exactly the good records, in order.

mod common;

use common::*;
use mutstream::codec::Reason;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn rejects(s: &mutstream::runtime::Summary, r: Reason) -> u64 {
    s.sources[0]
        .rejects
        .iter()
        .find(|x| x.0 == r)
        .map_or(0, |x| x.1)
}

/// Checks the sink holds exactly good records 0..n of connection 0.
fn check_good(wire: Wire, h: &Harness, n: u64) {
    let lines = read_json_lines(&h.path("out.jsonl"));
    assert_eq!(lines.len() as u64, n, "every good record, nothing else");
    for (q, v) in lines.iter().enumerate() {
        assert_eq!(wire.check(v), (0, q as u64));
    }
}

#[test]
fn json_garbage_is_counted_and_good_records_kept() {
    let wire = Wire::JsonTcp;
    let mut h = Harness::start(&wire.config(1, "to out", ""));
    let mut s = TcpStream::connect(h.addr("in")).unwrap();
    let bad: Vec<(Vec<u8>, Reason)> = vec![
        (b"{\"ts\":1,\"conn\":0,".to_vec(), Reason::Malformed),
        (
            b"{\"conn\":0,\"seq\":5,\"site\":\"\xff\xfe\"}".to_vec(),
            Reason::InvalidUtf8,
        ),
        (b"{\"seq\":1}".to_vec(), Reason::MissingField),
        (b"{\"conn\":null,\"seq\":1}".to_vec(), Reason::MissingField),
        (b"{\"conn\":\"x\",\"seq\":1}".to_vec(), Reason::TypeMismatch),
        (
            b"{\"conn\":0,\"seq\":1,\"temp\":{\"a\":1}}".to_vec(),
            Reason::TypeMismatch,
        ),
        (
            b"{\"conn\":0,\"seq\":1,\"battery\":1.5}".to_vec(),
            Reason::TypeMismatch,
        ),
        (
            b"{\"conn\":0,\"seq\":1,\"site\":\"abc".to_vec(),
            Reason::Malformed,
        ),
        (
            b"{\"conn\":0,\"seq\":1,\"temp\":NaN}".to_vec(),
            Reason::Malformed,
        ),
        (b"[1,2,3]".to_vec(), Reason::Malformed),
        (
            b"{\"conn\":0,\"seq\":99999999999999999999999}".to_vec(),
            Reason::OutOfRange,
        ),
        (
            b"{\"conn\":0,\"seq\":1,\"ts\":\"yesterday\"}".to_vec(),
            Reason::BadTimestamp,
        ),
        (b"\x00\x01\x02garbage".to_vec(), Reason::Malformed),
    ];
    let mut seq = 0u64;
    let mut good = Vec::new();
    for round in 0..20 {
        for (b, _) in &bad {
            good.clear();
            wire.record(0, seq, &mut good);
            seq += 1;
            s.write_all(&good).unwrap();
            s.write_all(b).unwrap();
            s.write_all(b"\n").unwrap();
        }
        if round == 10 {
            // A 10 MB line, far over max_frame (64 KiB).
            let long = vec![b'x'; 10 << 20];
            s.write_all(&long).unwrap();
            s.write_all(b"\n").unwrap();
        }
    }
    good.clear();
    wire.record(0, seq, &mut good);
    seq += 1;
    s.write_all(&good).unwrap();
    drop(s);
    h.wait_records(seq, Duration::from_secs(30));
    // Rejects are counted before the records after them; both are in.
    let summary = h.shutdown();
    for r in Reason::ALL {
        let want = bad.iter().filter(|(_, x)| *x == r).count() as u64 * 20
            + u64::from(r == Reason::FrameTooLong);
        assert_eq!(rejects(&summary, r), want, "{r}");
    }
    check_good(wire, &h, seq);
}

#[test]
fn csv_garbage_is_counted_and_good_records_kept() {
    let wire = Wire::CsvTcp;
    let mut h = Harness::start(&wire.config(1, "to out", ""));
    let mut s = TcpStream::connect(h.addr("in")).unwrap();
    let bad: Vec<(&[u8], Reason)> = vec![
        (b"1,0,1,d,s,1.5,true", Reason::ColumnCount),
        (b"1,0,1,d,s,1.5,true,4,extra", Reason::ColumnCount),
        (b"1,0,1,d\"x,s,1.5,true,4", Reason::Malformed),
        (b"1,0,1,d,s,hot,true,4", Reason::TypeMismatch),
        (b"1,,1,d,s,1.5,true,4", Reason::MissingField),
        (b"1,0,1,d,s,1.5,maybe,4", Reason::TypeMismatch),
        (b"1,0,1,d,\xff,1.5,true,4", Reason::InvalidUtf8),
        (b"noon,0,1,d,s,1.5,true,4", Reason::BadTimestamp),
    ];
    let mut seq = 0u64;
    let mut good = Vec::new();
    for _ in 0..10 {
        for (b, _) in &bad {
            good.clear();
            wire.record(0, seq, &mut good);
            seq += 1;
            s.write_all(&good).unwrap();
            s.write_all(b).unwrap();
            s.write_all(b"\n").unwrap();
        }
    }
    // An unterminated quote runs to the end of the stream (RFC 4180: a
    // quoted cell may hold newlines), so it goes last.
    good.clear();
    wire.record(0, seq, &mut good);
    seq += 1;
    s.write_all(&good).unwrap();
    s.write_all(b"1,0,1,\"d,s,1.5,true,4\n2,0,2,d,s,1.5,true,4\n")
        .unwrap();
    drop(s);
    h.wait_records(seq, Duration::from_secs(30));
    h.wait_for("the connection closed", Duration::from_secs(10), |h| {
        h.app
            .as_ref()
            .unwrap()
            .metrics()
            .sum(|m| m.sources[0].conns_closed.get())
            == 1
    });
    let summary = h.shutdown();
    for r in Reason::ALL {
        let want = bad.iter().filter(|(_, x)| *x == r).count() as u64 * 10
            + u64::from(r == Reason::Malformed);
        assert_eq!(rejects(&summary, r), want, "{r}");
    }
    check_good(wire, &h, seq);
}

#[test]
fn binary_frames_truncated_and_a_4gib_length_prefix() {
    let wire = Wire::BinaryLen32;
    let mut h = Harness::start(&wire.config(1, "to out", ""));
    let addr = h.addr("in");
    let mut s = TcpStream::connect(addr).unwrap();
    let mut seq = 0;
    let mut payload = Vec::new();
    for _ in 0..10 {
        // A frame of 3 good records and 7 stray bytes: 3 kept, 1 truncated.
        payload.clear();
        for _ in 0..3 {
            wire.record(0, seq, &mut payload);
            seq += 1;
        }
        payload.extend_from_slice(b"partial");
        s.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
        s.write_all(&payload).unwrap();
    }
    // Good records, then a 4 GiB prefix: the connection is closed.
    payload.clear();
    for _ in 0..5 {
        wire.record(0, seq, &mut payload);
        seq += 1;
    }
    s.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&payload).unwrap();
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    s.write_all(&[0u8; 100]).unwrap();
    drop(s);
    h.wait_records(seq, Duration::from_secs(30));
    h.wait_for("the connection closed", Duration::from_secs(10), |h| {
        h.app
            .as_ref()
            .unwrap()
            .metrics()
            .sum(|m| m.sources[0].conns_bad_frame.get())
            == 1
    });
    // The appliance still serves new connections.
    let mut s2 = TcpStream::connect(addr).unwrap();
    payload.clear();
    wire.record(0, seq, &mut payload);
    seq += 1;
    s2.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
    s2.write_all(&payload).unwrap();
    // A stream ending mid-frame is truncated.
    s2.write_all(&40u32.to_le_bytes()).unwrap();
    s2.write_all(&[1, 2, 3]).unwrap();
    drop(s2);
    h.wait_records(seq, Duration::from_secs(30));
    h.wait_for("both connections closed", Duration::from_secs(10), |h| {
        h.app
            .as_ref()
            .unwrap()
            .metrics()
            .sum(|m| m.sources[0].conns_closed.get())
            == 2
    });
    let summary = h.shutdown();
    assert_eq!(rejects(&summary, Reason::Truncated), 11);
    assert_eq!(rejects(&summary, Reason::FrameTooLong), 1);
    check_good(wire, &h, seq);
}

#[test]
fn udp_datagrams_partial_and_oversized() {
    let wire = Wire::BinaryDatagram;
    let cfg = wire.config(1, "to out", "").replace(
        "rcvbuf_bytes = \"32MiB\"",
        "rcvbuf_bytes = \"32MiB\"\nmax_frame = 400",
    );
    let mut h = Harness::start(&cfg);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = h.addr("in");
    let mut seq = 0;
    let mut d = Vec::new();
    for _ in 0..10 {
        d.clear();
        for _ in 0..2 {
            wire.record(0, seq, &mut d);
            seq += 1;
        }
        d.extend_from_slice(b"xyz");
        sock.send_to(&d, addr).unwrap();
        // Larger than max_frame: dropped whole, counted as truncated.
        sock.send_to(&[0u8; 1000], addr).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    h.wait_records(seq, Duration::from_secs(30));
    let m = h.app.as_ref().unwrap().metrics().clone();
    h.wait_for("all datagrams", Duration::from_secs(10), |_| {
        m.sum(|x| x.sources[0].datagrams.get()) == 20
    });
    let summary = h.shutdown();
    assert_eq!(rejects(&summary, Reason::Truncated), 10);
    assert_eq!(summary.sources[0].udp_truncated, 10);
    check_good(wire, &h, seq);
}

#[test]
fn lp_garbage_is_counted_and_good_records_kept() {
    let wire = Wire::LpTcp;
    let mut h = Harness::start(&wire.config(1, "to out", ""));
    let mut s = TcpStream::connect(h.addr("in")).unwrap();
    let bad: Vec<(&[u8], Reason)> = vec![
        (
            b"srec,device=d conn=0u,seq=1u,temp=hot 1",
            Reason::Malformed,
        ),
        (
            b"srec,device=d conn=0u,seq=1u,battery=1.5 1",
            Reason::TypeMismatch,
        ),
        (b"srec,device=d seq=1u 1", Reason::MissingField),
        (b"srec,device=d conn=-1i,seq=1u 1", Reason::OutOfRange),
        (b"other,device=d conn=0u,seq=1u 1", Reason::Skipped),
        (b"srec,device=\xff conn=0u,seq=1u 1", Reason::InvalidUtf8),
        (
            b"srec,device=d conn=0u,seq=1u 99999999999999999999999",
            Reason::BadTimestamp,
        ),
        (b"srec", Reason::Malformed),
    ];
    let mut seq = 0u64;
    let mut good = Vec::new();
    for _ in 0..10 {
        for (b, _) in &bad {
            good.clear();
            wire.record(0, seq, &mut good);
            seq += 1;
            s.write_all(&good).unwrap();
            s.write_all(b).unwrap();
            s.write_all(b"\n# a comment line\n\n").unwrap();
        }
    }
    // An unterminated string field runs on past newlines (they may be part
    // of a string), so it goes last: one record, malformed, at the end.
    s.write_all(b"srec,device=d conn=0u,seq=1u,site=\"abc 1\nsrec conn=0u,seq=2u 2\n")
        .unwrap();
    drop(s);
    h.wait_records(seq, Duration::from_secs(30));
    h.wait_for("the connection closed", Duration::from_secs(10), |h| {
        h.app
            .as_ref()
            .unwrap()
            .metrics()
            .sum(|m| m.sources[0].conns_closed.get())
            == 1
    });
    let summary = h.shutdown();
    for r in Reason::ALL {
        let want = bad.iter().filter(|(_, x)| *x == r).count() as u64 * 10
            + u64::from(r == Reason::Malformed);
        assert_eq!(rejects(&summary, r), want, "{r}");
    }
    check_good(wire, &h, seq);
}

/// A bad frame while the buffer ring is starved (2 buffers, 4 clients):
/// each receive ends for want of buffers, and is re-armed, before the data
/// ahead of it is handled. The connection that sent the bad frame is
/// still closed by the appliance (the client sees the close without
/// closing its end), and the good records before it all arrive.
#[test]
fn bad_frame_closes_the_connection_on_a_starved_buffer_ring() {
    const CLIENTS: u64 = 4;
    const GOOD: u64 = 20_000;
    let wire = Wire::BinaryLen32;
    let mut h =
        Harness::start(&wire.config(1, "to out", "recv_buffers = 2\nrecv_buffer_size = 4096\n"));
    let addr = h.addr("in");
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            s.spawn(move || {
                let mut bytes = Vec::new();
                let mut rec = Vec::new();
                for q in 0..GOOD {
                    rec.clear();
                    wire.record(c, q, &mut rec);
                    bytes.extend_from_slice(&(rec.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(&rec);
                }
                bytes.extend_from_slice(&u32::MAX.to_le_bytes());
                bytes.extend_from_slice(&[0u8; 64 << 10]);
                let mut sock = TcpStream::connect(addr).unwrap();
                // The appliance may close before all the junk is read.
                let _ = sock.write_all(&bytes);
                sock.set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut buf = [0u8; 64];
                match sock.read(&mut buf) {
                    Ok(0) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                    other => panic!("client {c}: the appliance kept the connection: {other:?}"),
                }
            });
        }
    });
    h.wait_records(CLIENTS * GOOD, Duration::from_secs(30));
    let summary = h.shutdown();
    assert_eq!(rejects(&summary, Reason::FrameTooLong), CLIENTS);
    verify_exact(wire, &h.path("out.jsonl"), CLIENTS, GOOD);
}
