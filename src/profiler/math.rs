//! The little floating-point the sampler needs, without `std` (whose `ln`
//! and `exp` come from the system's libm, which `core` cannot reach): the
//! natural logarithm for exponential intervals, and `1 - e^-x` for the weight
//! of a sample. Both to about 1e-15, far below the sampling noise.

const LN_2: f64 = core::f64::consts::LN_2;

/// `ln(x)` for finite `x > 0`: `x = m * 2^e` with `m` in [1, 2), and
/// `ln(m) = 2 atanh((m - 1) / (m + 1))`, whose series in `s = (m-1)/(m+1)`
/// (at most 1/3) gains a factor of 9 a term.
pub fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let (mut term, mut sum) = (s, 0.0);
    for k in 0..20 {
        sum += term / (2 * k + 1) as f64;
        term *= s2;
    }
    exp as f64 * LN_2 + 2.0 * sum
}

/// `1 - e^-x` for `x >= 0`: the chance that a block of `x` mean sampling
/// intervals holds a sample point. The series for small `x` (where
/// subtracting from 1 would lose the digits), else one minus [`exp_neg`].
pub fn one_minus_exp_neg(x: f64) -> f64 {
    debug_assert!(x >= 0.0);
    if x < 0.5 {
        // x - x^2/2! + x^3/3! - ...: alternating, terms fall by x/k.
        let (mut term, mut sum) = (x, 0.0);
        for k in 1..25 {
            sum += term;
            term *= -x / (k + 1) as f64;
            // Past 2^-60 of the sum, a term changes nothing.
            if term.abs() < sum * 8.7e-19 {
                break;
            }
        }
        return sum;
    }
    1.0 - exp_neg(x)
}

/// `e^-x` for `x >= 0`: `x = n ln 2 + r` with `r` in [0, ln 2), so
/// `e^-x = 2^-n e^-r`, the power of two put straight into the exponent
/// and `e^-r` by its series (17 terms reach 1e-17 at `r = ln 2`; a
/// halving-and-squaring scheme took three times the instructions).
fn exp_neg(x: f64) -> f64 {
    // Past 2^-1022 the result is not a normal number: as good as zero.
    if x >= 708.0 {
        return 0.0;
    }
    let n = (x / LN_2) as u64;
    let r = x - n as f64 * LN_2;
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 1..18 {
        term *= -r / k as f64;
        sum += term;
    }
    sum * f64::from_bits((1023 - n) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_std() {
        for &x in &[1e-300, 1e-20, 0.001, 0.3, 0.5, 0.999_999, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e300] {
            let want = f64::ln(x);
            assert!((ln(x) - want).abs() <= 1e-13 * want.abs().max(1.0), "ln({x}) = {} not {want}", ln(x));
        }
    }

    #[test]
    fn exp_neg_matches_std() {
        for &x in &[0.0, 0.5, LN_2, 1.0, 7.5, 40.0, 300.0, 707.9, 710.0] {
            let want = f64::exp(-x);
            assert!((exp_neg(x) - want).abs() <= 1e-14 * want + 1e-300, "e^-{x} = {} not {want}", exp_neg(x));
        }
    }

    #[test]
    fn one_minus_exp_neg_matches_std() {
        for &x in &[0.0, 1e-12, 1e-6, 0.01, 0.49, 0.5, 0.693, 1.0, 3.0, 20.0, 37.9, 38.1, 100.0, 707.0, 800.0] {
            let want = -f64::exp_m1(-x);
            let got = one_minus_exp_neg(x);
            assert!((got - want).abs() <= 1e-13 * want.max(1e-300), "1-e^-{x} = {got} not {want}");
        }
    }
}
