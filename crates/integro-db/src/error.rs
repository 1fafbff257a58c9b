use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the state of a resource (409): a name
    /// taken, a resource still in use, the last owner.
    #[error("{0}")]
    Conflict(String),
    /// A fault of ours, not the caller's (500): stored data that does not
    /// read back, a committer that stopped, a unit that panicked.
    #[error("{0}")]
    Internal(String),
    /// The caller's role does not allow the change (the rule says which).
    #[error("{0}")]
    Forbidden(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migrations: {0}")]
    Migrate(String),
    #[error("sealed secret: {0}")]
    Crypto(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    pub fn invalid(field: &str, message: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Turns a unique-constraint violation into a `Conflict` with a message a user
/// understands, where the insert happens.
pub trait OnUnique<T> {
    fn on_unique(self, message: &str) -> Result<T, StoreError>;
}

impl<T> OnUnique<T> for Result<T, sqlx::Error> {
    fn on_unique(self, message: &str) -> Result<T, StoreError> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(message.to_string())
            }
            _ => StoreError::Db(e),
        })
    }
}
