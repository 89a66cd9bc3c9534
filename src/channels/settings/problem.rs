//! A problem in a routes.yaml file, with where it is.

/// One problem in a routes.yaml file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// A problem at a located value.
pub fn at<T>(s: &serde_saphyr::Spanned<T>, message: impl Into<String>) -> Problem {
    Problem {
        line: s.referenced.line(),
        column: s.referenced.column(),
        message: message.into(),
    }
}
