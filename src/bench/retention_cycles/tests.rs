use super::*;

#[test]
fn the_cycles_must_leave_at_least_a_day_kept() {
    assert!(validate(0, 0, 30).is_ok());
    assert!(validate(14, 2, 30).is_ok());
    assert!(validate(29, 1, 30).is_ok());
    assert!(validate(15, 2, 30).is_err());
    assert!(validate(30, 1, 30).is_err());
    assert!(validate(3, 0, 30).is_err());
    assert!(validate(u32::MAX, 2, 30).is_err());
}

#[test]
fn each_cycle_moves_the_cutoff_by_the_slide() {
    assert_eq!(keep_days(30, 1, 2), Some(28));
    assert_eq!(keep_days(30, 10, 2), Some(10));
    assert_eq!(keep_days(30, 14, 2), Some(2));
    assert_eq!(keep_days(30, 15, 2), None);
    assert_eq!(keep_days(30, 16, 2), None);
}

#[test]
fn a_cycle_inserts_the_fills_rate_per_day() {
    assert_eq!(per_cycle(1_000_000, 2), 33_333);
    assert_eq!(per_cycle(60_000, 1), 1_000);
}

#[test]
fn cycle_windows_follow_each_other_without_overlap() {
    let now = Utc::now();
    let day = TimeDelta::days(1);
    for cycle in 1..=3 {
        let p = placement(now, cycle, 2, 1000);
        let start = now + day * (2 * (cycle as i32 - 1));
        let end = start + day * 2;
        assert!(p.first_at > start);
        let last = p.first_at + TimeDelta::microseconds(p.step_us * 999);
        assert!(last <= end);
        assert!(end - last < TimeDelta::milliseconds(1));
    }
}

#[test]
fn growth_is_over_the_last_half_of_the_cycles() {
    assert_eq!(last_half_growth(&[]), None);
    assert_eq!(last_half_growth(&[5]), None);
    // K = 10: cycle 5 -> 10.
    let v: Vec<i64> = (1..=10)
        .map(|c| if c <= 5 { 100 * c } else { 500 })
        .collect();
    assert_eq!(last_half_growth(&v), Some((5, 0.0)));
    let v: Vec<i64> = (1..=10).map(|c| 10 * c).collect();
    assert_eq!(last_half_growth(&v), Some((5, 10.0)));
    // K = 3: cycle 2 -> 3.
    assert_eq!(last_half_growth(&[0, 10, 40]), Some((2, 30.0)));
}

#[test]
fn maintenance_marks() {
    assert_eq!(maintenance_mark(true, true), "VA");
    assert_eq!(maintenance_mark(true, false), "V");
    assert_eq!(maintenance_mark(false, true), "A");
    assert_eq!(maintenance_mark(false, false), "-");
}
