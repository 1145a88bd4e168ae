//! Shared values, arrays and named shared memory under every start method; typecodes; typed
//! index errors; no descriptor or /dev/shm entry left behind.

// Python's documented example prints the literal 3.1415927, not π.
#![allow(clippy::approx_constant)]

mproc::enable_test_support!();

use mproc::{
    Array, CChar, Error, Number, RawArray, Scalar, SharedMemory, StartMethod, TypeCode, Value,
};
use rstest::rstest;
use std::time::Duration;

const LONG: Option<Duration> = Some(Duration::from_secs(30));

fn join_ok(p: &mproc::Process) {
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

fn negate(n: Value<f64>, a: Array<i32>) -> mproc::Result<()> {
    n.set(3.1415927);
    for i in 0..a.len() {
        a.set(i, -a.get(i)?)?;
    }
    Ok(())
}

#[rstest]
fn the_documented_value_and_array(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let num = ctx.value::<f64>(0.0).unwrap();
    let arr = ctx.array::<i32>(0..10).unwrap();
    assert_eq!(num.typecode(), TypeCode::F64);
    assert_eq!(arr.typecode().as_char(), 'i');
    let p = ctx.process(negate, (num.clone(), arr.clone()));
    p.start().unwrap();
    join_ok(&p);
    assert_eq!(num.get(), 3.1415927);
    assert_eq!(format!("{}", num.get()), "3.1415927");
    assert_eq!(
        format!("{:?}", arr.to_vec()),
        "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"
    );
}

fn add_under_lock(v: Value<u64>, n: u32) -> mproc::Result<()> {
    for _ in 0..n {
        let _g = v.get_lock().lock()?;
        v.set(v.get() + 1);
    }
    Ok(())
}

#[rstest]
fn value_increments_under_its_lock_are_exact(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let v = ctx.value::<u64>(0).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|_| {
            let p = ctx.process(add_under_lock, (v.clone(), 10_000));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &ps {
        join_ok(p);
    }
    assert_eq!(v.get(), 30_000);
    assert_eq!(v.update(|x| x * 2).unwrap(), 60_000);
}

fn add_with_lock(v: Value<u64>, n: u32) -> mproc::Result<()> {
    for _ in 0..n {
        v.with_lock(|x| *x += 1)?;
    }
    Ok(())
}

#[rstest]
fn with_lock_is_a_locked_read_modify_write(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let v = ctx.value::<u64>(0).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|_| {
            let p = ctx.process(add_with_lock, (v.clone(), 10_000));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &ps {
        join_ok(p);
    }
    assert_eq!(v.get(), 30_000);
    // Inside get_lock() held by this thread (the lock is an RLock, as Python's).
    let g = v.get_lock().lock().unwrap();
    assert_eq!(v.with_lock(|x| std::mem::replace(x, 7)).unwrap(), 30_000);
    assert_eq!(v.get_lock().count(), 1);
    drop(g);
    assert_eq!(v.get(), 7);
    assert!(!v.get_lock().is_mine());
}

fn fill_raw(a: RawArray<u16>, c: mproc::RawValue<CChar>) -> mproc::Result<()> {
    a.set_slice(0, &[7, 8, 9])?;
    c.set(CChar(b'z'));
    Ok(())
}

#[rstest]
fn raw_arrays_and_values(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let a = ctx.raw_array::<u16>([0u16; 5]).unwrap();
    let c = ctx.raw_value(CChar(b'a')).unwrap();
    assert_eq!(c.typecode(), TypeCode::Char);
    let p = ctx.process(fill_raw, (a.clone(), c.clone()));
    p.start().unwrap();
    join_ok(&p);
    assert_eq!(a.to_vec(), vec![7, 8, 9, 0, 0]);
    assert_eq!(a.slice(1..4).unwrap(), vec![8, 9, 0]);
    assert_eq!(c.get(), CChar(b'z'));
}

#[test]
fn index_errors_are_typed() {
    let ctx = mproc::get_context(StartMethod::Fork);
    let a = ctx.array::<i64>([1, 2, 3]).unwrap();
    assert!(matches!(
        a.get(3),
        Err(Error::IndexOutOfRange { index: 3, len: 3 })
    ));
    assert!(matches!(a.set(10, 0), Err(Error::IndexOutOfRange { .. })));
    assert!(matches!(
        a.set_slice(2, &[1, 2]),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert_eq!(
        a.to_vec(),
        vec![1, 2, 3],
        "a failed slice write changes nothing"
    );
    assert!(matches!(a.slice(1..5), Err(Error::IndexOutOfRange { .. })));
    assert_eq!(a.get(2).unwrap(), 3);
    let e = a.get(99).unwrap_err();
    assert_eq!(e.kind_name(), "IndexOutOfRange");
    let empty = ctx.raw_array::<f32>([]).unwrap();
    assert!(empty.is_empty());
    assert!(matches!(empty.get(0), Err(Error::IndexOutOfRange { .. })));
}

#[test]
fn typecodes_map_to_rust_types() {
    let all = "bBhHiIlLqQfdc";
    for (c, code) in all.chars().zip(TypeCode::ALL) {
        let parsed: TypeCode = c.to_string().parse().unwrap();
        assert_eq!(parsed, code);
        assert_eq!(code.as_char(), c);
    }
    assert_eq!(i8::TYPECODE.size(), 1);
    assert_eq!(u16::TYPECODE, TypeCode::U16);
    assert_eq!(i32::TYPECODE.size(), 4);
    assert_eq!(i64::TYPECODE, TypeCode::I64);
    assert_eq!(TypeCode::Long.size(), 8);
    assert_eq!(f32::TYPECODE.size(), 4);
    assert_eq!(CChar::TYPECODE.as_char(), 'c');
    for bad in ["x", "", "dd", "Z"] {
        assert!(matches!(
            bad.parse::<TypeCode>(),
            Err(Error::InvalidArgument(_))
        ));
    }
    let ctx = mproc::get_context(StartMethod::Spawn);
    let d = ctx
        .array_dyn(
            "h",
            &[Number::Int(-2), Number::Int(70_000), Number::Float(3.9)],
        )
        .unwrap();
    assert_eq!(d.typecode(), TypeCode::I16);
    assert_eq!(
        d.to_vec(),
        vec![
            Number::Int(-2),
            Number::Int(70_000 - 65_536),
            Number::Int(3)
        ]
    );
    let f = ctx.array_dyn("d", &[Number::Float(0.5)]).unwrap();
    f.set(0, Number::Int(2)).unwrap();
    assert_eq!(f.get(0).unwrap(), Number::Float(2.0));
    assert!(matches!(f.get(1), Err(Error::IndexOutOfRange { .. })));
    assert!(ctx.array_dyn("?", &[]).is_err());
}

fn shm_write(shm: SharedMemory, name: String) -> mproc::Result<()> {
    shm.write(0, b"hello")?;
    let again = SharedMemory::attach(&name)?;
    again.write(5, b" world")?;
    Ok(())
}

fn shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("psm_") || n.starts_with("mproc_test"))
                .collect()
        })
        .unwrap_or_default()
}

#[rstest]
fn named_shared_memory(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mine = |v: Vec<String>| -> Vec<String> {
        let pid = std::process::id().to_string();
        v.into_iter()
            .filter(|n| n.contains(&format!("_{pid}_")) || n.ends_with(&pid))
            .collect()
    };
    let before = mine(shm_entries());
    let ctx = mproc::get_context(m);
    let shm = SharedMemory::create(None, 64).unwrap();
    assert_eq!(shm.size(), 64);
    assert!(std::path::Path::new(&format!("/dev/shm/{}", shm.name())).exists());
    let p = ctx.process(
        shm_write,
        (
            SharedMemory::attach(shm.name()).unwrap(),
            shm.name().to_string(),
        ),
    );
    p.start().unwrap();
    join_ok(&p);
    let mut buf = [0u8; 11];
    shm.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello world");
    assert!(matches!(
        shm.read(60, &mut buf),
        Err(Error::IndexOutOfRange { .. })
    ));
    let name = shm.name().to_string();
    drop(shm);
    // The owner's handle is gone: so is the name.
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    assert_eq!(mine(shm_entries()), before);
    match SharedMemory::attach(&name) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Explicit names and unlink.
    let named = format!("mproc_test_{}", std::process::id());
    let a = SharedMemory::create(Some(&named), 10).unwrap();
    assert!(matches!(
        SharedMemory::create(Some(&named), 10),
        Err(Error::Io(_))
    ));
    let b = SharedMemory::attach(&named).unwrap();
    b.write(0, &[42]).unwrap();
    assert_eq!(a.buf()[0].load(std::sync::atomic::Ordering::Relaxed), 42);
    b.unlink().unwrap();
    assert!(!std::path::Path::new(&format!("/dev/shm/{named}")).exists());
    drop(a);
    drop(b);
    assert!(matches!(
        SharedMemory::create(None, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(SharedMemory::create(Some("a/b"), 8).is_err());
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn touch_everything(
    q: mproc::Queue<u32>,
    l: mproc::Lock,
    c: mproc::Condition,
    v: Value<i32>,
    a: Array<u8>,
    b: mproc::Barrier,
    s: mproc::BoundedSemaphore,
) -> mproc::Result<()> {
    q.put(1, true, None)?;
    drop(l.lock()?);
    drop(c.lock()?);
    v.set(5);
    a.set(0, 9)?;
    assert_eq!(b.parties(), 1);
    b.wait(None)?;
    drop(s.acquire(true, None)?);
    Ok(())
}

#[rstest]
fn no_descriptor_is_leaked(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    // Start the forkserver (it keeps a connection open) before counting.
    let warm = ctx.process(fill_nothing, ());
    warm.start().unwrap();
    join_ok(&warm);
    drop(warm);
    let before = count_fds();
    for _ in 0..3 {
        let q = ctx.queue::<u32>(None).unwrap();
        let l = ctx.lock().unwrap();
        let c = ctx.condition(None).unwrap();
        let v = ctx.value::<i32>(0).unwrap();
        let a = ctx.array::<u8>([0u8; 4]).unwrap();
        let b = ctx.barrier(1).unwrap();
        let s = ctx.bounded_semaphore(1).unwrap();
        let p = ctx.process(
            touch_everything,
            (q.clone(), l, c, v.clone(), a.clone(), b, s),
        );
        p.start().unwrap();
        join_ok(&p);
        drop(p);
        assert_eq!(q.get(true, LONG).unwrap(), 1);
        assert_eq!(v.get(), 5);
        assert_eq!(a.get(0).unwrap(), 9);
    }
    assert_eq!(count_fds(), before);
}

fn fill_nothing() {}
