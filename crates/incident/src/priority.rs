//! Priority from impact × urgency, through a configurable matrix.
//!
//! Impact (how widely the business is hurt) and urgency (how soon it hurts)
//! each run from 1 = high to N = low, where N is the matrix's number of levels
//! (3, as in ITIL, or 4). The matrix cell at (impact, urgency) is the
//! priority, 1 = critical to 5 = planning.

use serde::{Deserialize, Serialize};

use crate::error::IncidentError;

/// Lowest (least urgent) priority.
const LOWEST_PRIORITY: u8 = 5;

/// How widely an incident hurts the business: 1 = high .. N = low.
/// Obtained from [`PriorityMatrix::impact`], which knows N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Impact(u8);

impl Impact {
    /// The level, 1 = high.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// How soon an incident hurts the business: 1 = high .. N = low.
/// Obtained from [`PriorityMatrix::urgency`], which knows N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Urgency(u8);

impl Urgency {
    /// The level, 1 = high.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// An incident's priority: 1 = critical (P1) .. 5 = planning (P5).
/// Ordering follows the number, so the most urgent priority sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(u8);

impl Priority {
    /// A priority given directly (an audited override); must be 1..=5.
    pub fn new(p: i64) -> Result<Priority, IncidentError> {
        u8::try_from(p)
            .ok()
            .filter(|v| (1..=LOWEST_PRIORITY).contains(v))
            .map(Priority)
            .ok_or(IncidentError::InvalidPriority(p))
    }

    /// The number, 1 = critical.
    pub fn get(self) -> u8 {
        self.0
    }

    /// Whether this is P1, the candidate for a major incident.
    pub fn is_critical(self) -> bool {
        self.0 == 1
    }

    /// One step more urgent (P3 → P2); `None` at P1, which cannot rise.
    pub fn raised(self) -> Option<Priority> {
        (self.0 > 1).then(|| Priority(self.0 - 1))
    }
}

/// The impact × urgency table. Rows are indexed by impact − 1, columns by
/// urgency − 1, values are priorities 1..=5.
///
/// Invariant: square, 3×3 or 4×4, every value in 1..=5, and monotonic: a
/// value never falls (gets more urgent) moving right (lower urgency) or down
/// (lower impact). Serialises as its rows; deserialising validates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Vec<u8>>", into = "Vec<Vec<u8>>")]
pub struct PriorityMatrix {
    rows: Vec<Vec<u8>>,
    levels: u8,
}

impl PriorityMatrix {
    /// Checks and builds a matrix; [`IncidentError::InvalidMatrix`] says
    /// what is wrong.
    pub fn new(rows: Vec<Vec<u8>>) -> Result<Self, IncidentError> {
        let bad = |msg: String| Err(IncidentError::InvalidMatrix(msg));
        let n = rows.len();
        if n != 3 && n != 4 {
            return bad(format!("it must have 3 or 4 impact levels (rows), not {n}"));
        }
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n {
                return bad(format!(
                    "it must be square, but impact {} has {} urgency levels instead of {n}",
                    i + 1,
                    row.len()
                ));
            }
            for (j, &v) in row.iter().enumerate() {
                if !(1..=LOWEST_PRIORITY).contains(&v) {
                    return bad(format!(
                        "impact {}, urgency {} is {v}, but priorities run from 1 to 5",
                        i + 1,
                        j + 1
                    ));
                }
            }
        }
        // A lower impact or urgency must never yield a more urgent priority.
        for i in 0..n {
            for j in 0..n {
                let v = rows[i][j];
                if j > 0 && v < rows[i][j - 1] {
                    return bad(format!(
                        "impact {}, urgency {} is P{v}, more urgent than P{} at the higher urgency {}",
                        i + 1,
                        j + 1,
                        rows[i][j - 1],
                        j
                    ));
                }
                if i > 0 && v < rows[i - 1][j] {
                    return bad(format!(
                        "impact {}, urgency {} is P{v}, more urgent than P{} at the higher impact {}",
                        i + 1,
                        j + 1,
                        rows[i - 1][j],
                        i
                    ));
                }
            }
        }
        Ok(Self {
            levels: if n == 3 { 3 } else { 4 },
            rows,
        })
    }

    /// The four-level matrix: `[[1,2,3,4],[2,3,4,5],[3,4,5,5],[4,5,5,5]]`.
    /// Impact and urgency run from 1 (high) to 4 (low).
    pub fn four_level() -> Self {
        Self {
            rows: vec![
                vec![1, 2, 3, 4],
                vec![2, 3, 4, 5],
                vec![3, 4, 5, 5],
                vec![4, 5, 5, 5],
            ],
            levels: 4,
        }
    }

    /// How many impact (and urgency) levels there are: 3 or 4.
    pub fn levels(&self) -> u8 {
        self.levels
    }

    /// Checks a raw impact against this matrix's levels.
    pub fn impact(&self, raw: i64) -> Result<Impact, IncidentError> {
        self.level(raw)
            .map(Impact)
            .ok_or(IncidentError::InvalidImpact(raw))
    }

    /// Checks a raw urgency against this matrix's levels.
    pub fn urgency(&self, raw: i64) -> Result<Urgency, IncidentError> {
        self.level(raw)
            .map(Urgency)
            .ok_or(IncidentError::InvalidUrgency(raw))
    }

    /// The priority at (impact, urgency). A level beyond this matrix's (from
    /// a matrix with more levels) counts as this matrix's lowest level.
    pub fn priority(&self, impact: Impact, urgency: Urgency) -> Priority {
        let index = |level: u8| usize::from(level.clamp(1, self.levels) - 1);
        self.rows
            .get(index(impact.0))
            .and_then(|row| row.get(index(urgency.0)))
            .map_or(Priority(LOWEST_PRIORITY), |&p| Priority(p))
    }

    /// The table, rows by impact, columns by urgency.
    pub fn rows(&self) -> Vec<Vec<u8>> {
        self.rows.clone()
    }

    fn level(&self, raw: i64) -> Option<u8> {
        u8::try_from(raw)
            .ok()
            .filter(|v| (1..=self.levels).contains(v))
    }
}

impl Default for PriorityMatrix {
    /// The ITIL three-level matrix: `[[1,2,3],[2,3,4],[3,4,5]]`.
    fn default() -> Self {
        Self {
            rows: vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4, 5]],
            levels: 3,
        }
    }
}

impl TryFrom<Vec<Vec<u8>>> for PriorityMatrix {
    type Error = IncidentError;
    fn try_from(rows: Vec<Vec<u8>>) -> Result<Self, Self::Error> {
        Self::new(rows)
    }
}

impl From<PriorityMatrix> for Vec<Vec<u8>> {
    fn from(m: PriorityMatrix) -> Self {
        m.rows
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(m: &PriorityMatrix, impact: i64, urgency: i64) -> u8 {
        m.priority(m.impact(impact).unwrap(), m.urgency(urgency).unwrap())
            .get()
    }

    #[test]
    fn the_default_matrix_is_the_itil_three_by_three_in_every_cell() {
        let m = PriorityMatrix::default();
        assert_eq!(m.levels(), 3);
        let expected = [[1, 2, 3], [2, 3, 4], [3, 4, 5]];
        for (i, row) in expected.iter().enumerate() {
            for (j, &want) in row.iter().enumerate() {
                assert_eq!(
                    p(&m, i as i64 + 1, j as i64 + 1),
                    want,
                    "impact {i}, urgency {j}"
                );
            }
        }
    }

    #[test]
    fn the_four_level_matrix_gives_the_documented_priority_in_every_cell() {
        let m = PriorityMatrix::four_level();
        assert_eq!(m.levels(), 4);
        let expected = [[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 5], [4, 5, 5, 5]];
        for (i, row) in expected.iter().enumerate() {
            for (j, &want) in row.iter().enumerate() {
                assert_eq!(
                    p(&m, i as i64 + 1, j as i64 + 1),
                    want,
                    "impact {i}, urgency {j}"
                );
            }
        }
    }

    #[test]
    fn the_built_in_matrices_pass_their_own_validation() {
        for m in [PriorityMatrix::default(), PriorityMatrix::four_level()] {
            assert_eq!(PriorityMatrix::new(m.rows()), Ok(m));
        }
    }

    #[test]
    fn impact_and_urgency_must_be_within_the_matrix_levels() {
        let three = PriorityMatrix::default();
        let four = PriorityMatrix::four_level();
        for bad in [0, -1, 4, 256, i64::MAX, i64::MIN] {
            assert_eq!(three.impact(bad), Err(IncidentError::InvalidImpact(bad)));
            assert_eq!(three.urgency(bad), Err(IncidentError::InvalidUrgency(bad)));
        }
        assert_eq!(four.impact(4).map(Impact::get), Ok(4));
        assert_eq!(four.urgency(4).map(Urgency::get), Ok(4));
        assert_eq!(four.impact(5), Err(IncidentError::InvalidImpact(5)));
    }

    #[test]
    fn a_level_from_a_larger_matrix_counts_as_the_lowest_level() {
        let four = PriorityMatrix::four_level();
        let three = PriorityMatrix::default();
        let low = four.impact(4).unwrap();
        let high = four.urgency(1).unwrap();
        assert_eq!(three.priority(low, high).get(), 3);
    }

    #[test]
    fn a_priority_override_must_be_between_one_and_five() {
        for ok in 1..=5 {
            assert_eq!(Priority::new(ok).map(Priority::get), Ok(ok as u8));
        }
        for bad in [0, 6, -1, 257, i64::MAX] {
            assert_eq!(Priority::new(bad), Err(IncidentError::InvalidPriority(bad)));
        }
        assert!(Priority::new(1).unwrap().is_critical());
        assert!(!Priority::new(2).unwrap().is_critical());
        assert!(Priority::new(1).unwrap() < Priority::new(2).unwrap());
    }

    fn refused(rows: Vec<Vec<u8>>) -> bool {
        matches!(
            PriorityMatrix::new(rows),
            Err(IncidentError::InvalidMatrix(_))
        )
    }

    #[test]
    fn a_matrix_that_is_not_square_is_refused() {
        assert!(refused(vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4]]));
        assert!(refused(vec![
            vec![1, 2, 3, 4],
            vec![2, 3, 4, 5],
            vec![3, 4, 5, 5]
        ]));
        assert!(refused(vec![
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 5],
            vec![4, 5, 5]
        ]));
    }

    #[test]
    fn a_matrix_of_other_than_three_or_four_levels_is_refused() {
        assert!(refused(vec![]));
        assert!(refused(vec![vec![1, 2], vec![2, 3]]));
        assert!(refused(vec![vec![1; 5]; 5]));
    }

    #[test]
    fn a_matrix_value_outside_one_to_five_is_refused() {
        assert!(refused(vec![vec![0, 2, 3], vec![2, 3, 4], vec![3, 4, 5]]));
        assert!(refused(vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4, 6]]));
    }

    #[test]
    fn a_matrix_that_gets_more_urgent_to_the_right_or_down_is_refused() {
        assert!(refused(vec![vec![1, 3, 2], vec![3, 3, 4], vec![3, 4, 5]]));
        assert!(refused(vec![vec![1, 2, 3], vec![2, 3, 4], vec![1, 4, 5]]));
        let msg = PriorityMatrix::new(vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 2, 5]]);
        assert!(
            matches!(msg, Err(IncidentError::InvalidMatrix(m)) if m.contains("impact 3, urgency 2"))
        );
        // Flat rows and columns are fine.
        assert!(PriorityMatrix::new(vec![vec![2; 3]; 3]).is_ok());
    }

    #[test]
    fn raising_a_priority_stops_at_p1() {
        let p = |n| Priority::new(n).unwrap();
        assert_eq!(p(3).raised(), Some(p(2)));
        assert_eq!(p(2).raised(), Some(p(1)));
        assert_eq!(p(1).raised(), None);
    }
}
