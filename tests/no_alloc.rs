//! The engine's promise that a line without hits costs no allocation: a
//! counting global allocator watches scans of miss-only lines.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn lines_without_hits_allocate_nothing() {
    let feed = "198.51.100.7\n203.0.113.0/24\n2001:db8::7\n2001:db8:aa::/48\nmalware.example\n\
                http://dl.example/a.exe\nurl\tdl.example/b\nceo@phish.example\n\
                44d88612fea8a8f36de82e1278abb02f\nEvilMutex\nregex\tcmd\\.exe /[ck]\n";
    let engine = common::engine(feed);
    let lines: [&[u8]; 6] = [
        b"{\"ts\":1521911721.255387,\"id.orig_h\":\"10.47.2.154\",\"id.resp_h\":\"198.51.100.8\",\"query\":\"www.example.com\"}",
        b"GET https://cdn.example.net:8443/x/y.js?q=1 HTTP/1.1 from 2001:db8::8 [2001:db8:ab::1]:443",
        b"mail from bob@example.org to alice@example.com md5=d41d8cd98f00b204e9800998ecf8427e",
        b"\xff\xfe\x00 binary \x80\x81 203.0.114.1 not.malware.example.org notmalware.example",
        b"Process cmd.exe started with /q; Mutex Global\\GoodMutex",
        b"",
    ];
    let mut st = iocd::ScanState::new();
    let start = ALLOCATIONS.with(Cell::get);
    // Warm-up: buffers grow to the longest URL or email, the regex cache is made.
    for l in lines {
        assert!(
            engine.scan(l, &mut st).is_empty(),
            "{:?} should not hit",
            String::from_utf8_lossy(l)
        );
    }
    let before = ALLOCATIONS.with(Cell::get);
    assert!(
        before > start,
        "the counter sees the warm-up's allocations, so it can see a scan's"
    );
    for _ in 0..1000 {
        for l in lines {
            assert!(engine.scan(l, &mut st).is_empty());
        }
    }
    assert_eq!(
        ALLOCATIONS.with(Cell::get) - before,
        0,
        "scans of lines without hits allocated"
    );

    // The same lines as blocks, as `iocd scan` and the daemon scan them.
    let mut block = Vec::new();
    let mut batch = iocd::lines::Lines::default();
    for _ in 0..100 {
        for l in lines {
            block.extend_from_slice(l);
            block.push(b'\n');
            batch.push(l);
        }
    }
    let rule = iocd::lines::LineRule::new(iocd::scan::DEFAULT_MAX_LINE);
    let mut hits = 0;
    engine.scan_lines(&block, rule, &mut st, |_| hits += 1);
    engine.scan_batch(&batch, &mut st, |_| hits += 1);
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        let sum = engine.scan_lines(&block, rule, &mut st, |_| hits += 1);
        assert_eq!(sum.lines, 600);
        engine.scan_batch(&batch, &mut st, |_| hits += 1);
    }
    assert_eq!(hits, 0);
    assert_eq!(
        ALLOCATIONS.with(Cell::get) - before,
        0,
        "block scans of lines without hits allocated"
    );
}
