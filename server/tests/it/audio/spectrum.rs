//! Finding the loudest frequency in a block of samples, to check what a listener would hear.
//! Test tooling: it lives with the tests, not in the node's library.

/// Longest input analysed; longer input is cut to its last this-many samples.
const MAX_LEN: usize = 1 << 17;

/// The frequency in Hz of the strongest spectral peak in `samples` (one channel) at
/// `sample_rate`, or `0.0` when there is nothing to find (fewer than 4 samples, silence, a
/// constant, or a sample rate that is not positive).
///
/// The mean is removed, the samples are Hann-windowed and zero-padded to a power of two, and the
/// peak bin of a radix-2 FFT is refined by Gaussian interpolation over its neighbours, which
/// gives a small fraction of a bin: about 0.1 Hz for a pure tone in one second at 48 kHz.
/// Input longer than 131072 samples is cut to its last 131072.
pub(crate) fn dominant_frequency(samples: &[f32], sample_rate: f64) -> f64 {
    let samples = &samples[samples.len().saturating_sub(MAX_LEN)..];
    let n = samples.len();
    if n < 4 || sample_rate.is_nan() || sample_rate <= 0.0 {
        return 0.0;
    }
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
    let size = n.next_power_of_two();
    let mut re = vec![0.0f64; size];
    let mut im = vec![0.0f64; size];
    let step = 2.0 * std::f64::consts::PI / (n - 1) as f64;
    for (i, (&s, r)) in samples.iter().zip(re.iter_mut()).enumerate() {
        let hann = 0.5 - 0.5 * (step * i as f64).cos();
        *r = (f64::from(s) - mean) * hann;
    }
    fft(&mut re, &mut im);

    let power: Vec<f64> = re[..=size / 2]
        .iter()
        .zip(&im[..=size / 2])
        .map(|(r, i)| r * r + i * i)
        .collect();
    // Bin 0 is what is left of DC; the peak search starts above it.
    let Some((peak, &max)) = power
        .iter()
        .enumerate()
        .skip(1)
        .max_by(|a, b| a.1.total_cmp(b.1))
    else {
        return 0.0;
    };
    if !max.is_finite() || max <= 1e-18 * n as f64 {
        return 0.0;
    }
    let offset = if peak + 1 < power.len() {
        // A Hann window's main lobe is close to a Gaussian, whose log is a parabola: fitting
        // one through the log magnitudes of the peak and its neighbours finds the centre.
        let (a, b, c) = (
            log_mag(power[peak - 1]),
            log_mag(power[peak]),
            log_mag(power[peak + 1]),
        );
        let denominator = a - 2.0 * b + c;
        if denominator < 0.0 {
            (0.5 * (a - c) / denominator).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    } else {
        0.0
    };
    (peak as f64 + offset) * sample_rate / size as f64
}

fn log_mag(power: f64) -> f64 {
    0.5 * power.max(1e-300).ln()
}

/// In-place iterative radix-2 FFT; `re.len()` must be a power of two.
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n);
    // Bit-reversal permutation.
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * std::f64::consts::PI / len as f64;
        let (w_im, w_re) = angle.sin_cos();
        for start in (0..n).step_by(len) {
            let (mut c_re, mut c_im) = (1.0f64, 0.0f64);
            for k in 0..len / 2 {
                let (a, b) = (start + k, start + k + len / 2);
                let t_re = re[b] * c_re - im[b] * c_im;
                let t_im = re[b] * c_im + im[b] * c_re;
                re[b] = re[a] - t_re;
                im[b] = im[a] - t_im;
                re[a] += t_re;
                im[a] += t_im;
                let next = c_re * w_re - c_im * w_im;
                c_im = c_re * w_im + c_im * w_re;
                c_re = next;
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: f64, n: usize, amplitude: f32) -> Vec<f32> {
        (0..n)
            .map(|i| amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin() as f32)
            .collect()
    }

    #[test]
    fn finds_a_pure_tone_to_a_fraction_of_a_bin() {
        for freq in [50.0, 440.0, 660.0, 997.3, 1000.0, 5123.4, 15_000.0] {
            let found = dominant_frequency(&sine(freq, 48_000.0, 48_000, 0.5), 48_000.0);
            assert!((found - freq).abs() < 0.5, "{freq} Hz found as {found}");
        }
        // 20 ms, one Opus frame: bins are 46.9 Hz wide, interpolation still lands close.
        let found = dominant_frequency(&sine(660.0, 48_000.0, 960, 0.5), 48_000.0);
        assert!((found - 660.0).abs() < 5.0, "{found}");
        // Another rate, and an input longer than the analysis window.
        let found = dominant_frequency(&sine(1234.0, 44_100.0, 300_000, 0.1), 44_100.0);
        assert!((found - 1234.0).abs() < 0.5, "{found}");
    }

    #[test]
    fn the_louder_of_two_tones_wins_over_noise_and_dc() {
        let mut state = 0x2545_f491_u32;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * 0.2
        };
        let quiet = sine(1000.0, 48_000.0, 24_000, 0.1);
        let loud = sine(660.0, 48_000.0, 24_000, 0.4);
        let mixed: Vec<f32> = quiet
            .iter()
            .zip(&loud)
            .map(|(a, b)| a + b + 0.3 + noise())
            .collect();
        let found = dominant_frequency(&mixed, 48_000.0);
        assert!((found - 660.0).abs() < 1.0, "{found}");
    }

    #[test]
    fn nothing_to_find_is_zero() {
        assert_eq!(dominant_frequency(&[], 48_000.0), 0.0);
        assert_eq!(dominant_frequency(&[0.5; 3], 48_000.0), 0.0);
        assert_eq!(dominant_frequency(&[0.0; 4800], 48_000.0), 0.0);
        assert_eq!(dominant_frequency(&[0.25; 4800], 48_000.0), 0.0);
        assert_eq!(
            dominant_frequency(&sine(440.0, 48_000.0, 4800, 0.5), 0.0),
            0.0
        );
    }

    #[test]
    fn the_fft_matches_a_direct_dft() {
        let n = 64;
        let input: Vec<f64> = (0..n).map(|i| ((i * 7 % 13) as f64).sin()).collect();
        let (mut re, mut im) = (input.clone(), vec![0.0; n]);
        fft(&mut re, &mut im);
        for k in 0..n {
            let (mut dr, mut di) = (0.0, 0.0);
            for (t, x) in input.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                dr += x * a.cos();
                di += x * a.sin();
            }
            assert!(
                (re[k] - dr).abs() < 1e-9 && (im[k] - di).abs() < 1e-9,
                "bin {k}"
            );
        }
    }
}
