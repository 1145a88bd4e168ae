mproc::enable_test_support!();

use mproc::StartMethod;
use rstest::rstest;

fn exit_with(code: i32) {
    mproc::exit(code);
}

#[rstest]
fn exit_codes(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = mproc::get_context(m).process(exit_with, (7,));
    p.start().unwrap();
    p.join(None).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(7));
}
