//! The one name every stage uses for a Kafka topic-partition. It sits below the stages, so that
//! `commit` (offsets in a snapshot summary) and `spill` need not import the source to name one.

/// A topic and a partition number.
pub type TopicPartition = (String, i32);
