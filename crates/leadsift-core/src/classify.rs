//! The classifier trait every triage engine implements.

use crate::lists::SenderStanding;
use crate::message::Message;
use crate::verdict::Classification;

/// A pure function from a message (and its sender's list standing) to a
/// classification that names its reasons. Implementations must not do I/O
/// and must be cheap to share across threads: triage calls them from a
/// blocking pool, many messages at a time.
pub trait Classifier: Send + Sync {
    fn classify(&self, message: &Message, standing: &SenderStanding) -> Classification;
}

impl<T: Classifier + ?Sized> Classifier for std::sync::Arc<T> {
    fn classify(&self, message: &Message, standing: &SenderStanding) -> Classification {
        (**self).classify(message, standing)
    }
}
