//! Summary statistics of a set of measurements.

/// A set of measurements of one quantity (nanoseconds per operation, bytes, ...), in the
/// order they were taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    /// An empty set.
    pub fn new() -> Self {
        Samples { values: Vec::new() }
    }

    /// An empty set with room for `capacity` values (so pushing does not allocate mid-run).
    pub fn with_capacity(capacity: usize) -> Self {
        Samples {
            values: Vec::with_capacity(capacity),
        }
    }

    /// Adds one measurement. Non-finite values (a broken clock reading) are ignored.
    pub fn push(&mut self, value: f64) {
        if value.is_finite() {
            self.values.push(value);
        }
    }

    /// Number of measurements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no measurements.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The measurements, in the order they were taken.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The `q`-quantile (`0.0..=1.0`), interpolating linearly between the two nearest ranks
    /// (so the median of an even count is the mean of the middle two). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let q = q.clamp(0.0, 1.0);
        let position = q * (sorted.len() - 1) as f64;
        let lower = position.floor() as usize;
        let upper = position.ceil() as usize;
        let fraction = position - lower as f64;
        Some(sorted[lower] + (sorted[upper] - sorted[lower]) * fraction)
    }

    /// The median, or `None` when empty.
    pub fn median(&self) -> Option<f64> {
        self.quantile(0.5)
    }

    /// The 99th percentile, or `None` when empty.
    pub fn p99(&self) -> Option<f64> {
        self.quantile(0.99)
    }

    /// The smallest measurement, or `None` when empty.
    pub fn min(&self) -> Option<f64> {
        self.values.iter().copied().reduce(f64::min)
    }

    /// The largest measurement, or `None` when empty.
    pub fn max(&self) -> Option<f64> {
        self.values.iter().copied().reduce(f64::max)
    }
}

impl FromIterator<f64> for Samples {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        let mut samples = Samples::new();
        for value in iter {
            samples.push(value);
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_set_has_no_statistics() {
        let samples = Samples::new();
        assert!(samples.is_empty());
        assert_eq!(samples.median(), None);
        assert_eq!(samples.p99(), None);
        assert_eq!(samples.min(), None);
    }

    #[test]
    fn single_value_is_every_quantile() {
        let samples: Samples = [7.0].into_iter().collect();
        assert_eq!(samples.median(), Some(7.0));
        assert_eq!(samples.p99(), Some(7.0));
        assert_eq!(samples.quantile(0.0), Some(7.0));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd: Samples = [5.0, 1.0, 3.0].into_iter().collect();
        assert_eq!(odd.median(), Some(3.0));
        let even: Samples = [4.0, 1.0, 3.0, 2.0].into_iter().collect();
        assert_eq!(even.median(), Some(2.5));
    }

    #[test]
    fn p99_of_one_to_hundred_one() {
        // 101 values 0..=100: rank 0.99 * 100 = 99 exactly.
        let samples: Samples = (0..=100).rev().map(f64::from).collect();
        assert_eq!(samples.p99(), Some(99.0));
        assert_eq!(samples.median(), Some(50.0));
        assert_eq!(samples.min(), Some(0.0));
        assert_eq!(samples.max(), Some(100.0));
    }

    #[test]
    fn p99_interpolates_between_ranks() {
        // 1..=100: position 0.99 * 99 = 98.01, between 99 and 100.
        let samples: Samples = (1..=100).map(f64::from).collect();
        let p99 = samples.p99().unwrap();
        assert!((p99 - 99.01).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn one_outlier_moves_p99_not_median() {
        let mut samples: Samples = std::iter::repeat_n(10.0, 999).collect();
        samples.push(1_000_000.0);
        assert_eq!(samples.median(), Some(10.0));
        assert_eq!(samples.p99(), Some(10.0));
        assert_eq!(samples.max(), Some(1_000_000.0));
    }

    #[test]
    fn non_finite_values_are_dropped() {
        let mut samples = Samples::with_capacity(3);
        samples.push(f64::NAN);
        samples.push(f64::INFINITY);
        samples.push(2.0);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples.values(), &[2.0]);
    }
}
