//! Inbound topic aliases (MQTT 5, 3.3.2.3.4).

use switchboard_codec::{Publish, ReasonCode};

use crate::hash::PacketIdMap;

/// The topic aliases a client has set up on one connection. Create one per
/// connection: mappings never carry over to another ([MQTT-3.3.2-7]).
///
/// Memory is bounded by the Topic Alias Maximum the server advertised: at
/// most that many topics are held, each at most the 65,535 bytes a topic
/// can be ([MQTT-4.7.3-3]).
#[derive(Debug, Clone, Default)]
pub struct InboundAliases {
    maximum: u16,
    /// Alias -> topic. Keyed like packet ids (a `u16`), so the same cheap hash.
    /// Boxed and made on the first alias: most clients use none, and every
    /// connection holds one of these for its whole life (8 bytes instead of 32).
    topics: Option<Box<PacketIdMap<String>>>,
}

impl InboundAliases {
    /// `maximum` is the Topic Alias Maximum the server sent in CONNACK
    /// (3.2.2.3.8); 0 (the default) accepts no alias.
    pub fn new(maximum: u16) -> InboundAliases {
        InboundAliases {
            maximum,
            topics: None,
        }
    }

    /// Resolves `publish.properties.topic_alias` in place, then clears it.
    ///
    /// - Alias 0, or above the maximum: `TOPIC_ALIAS_INVALID`
    ///   ([MQTT-3.3.2-8], [MQTT-3.3.2-9], [MQTT-3.3.2-12]).
    /// - Alias with a topic: the alias now stands for that topic (replacing
    ///   any earlier mapping).
    /// - Alias with an empty topic: the topic is filled in from the mapping;
    ///   an alias never set is a `PROTOCOL_ERROR`.
    /// - No alias and an empty topic: `PROTOCOL_ERROR` (3.3.2.1: a topic or
    ///   an alias must be present).
    ///
    /// On error the publish is left as it was.
    pub fn resolve(&mut self, publish: &mut Publish) -> Result<(), ReasonCode> {
        let Some(alias) = publish.properties.topic_alias else {
            if publish.topic.is_empty() {
                return Err(ReasonCode::PROTOCOL_ERROR);
            }
            return Ok(());
        };
        if alias == 0 || alias > self.maximum {
            return Err(ReasonCode::TOPIC_ALIAS_INVALID);
        }
        if publish.topic.is_empty() {
            let topic = self
                .topics
                .as_ref()
                .and_then(|topics| topics.get(&alias))
                .ok_or(ReasonCode::PROTOCOL_ERROR)?;
            publish.topic.clone_from(topic);
        } else {
            let topics = self.topics.get_or_insert_with(Box::default);
            match topics.get_mut(&alias) {
                // Reuse the old string's allocation when it is big enough.
                Some(topic) => topic.clone_from(&publish.topic),
                None => {
                    topics.insert(alias, publish.topic.clone());
                }
            }
        }
        publish.properties.topic_alias = None;
        Ok(())
    }

    /// How many aliases are set.
    pub fn len(&self) -> usize {
        self.topics.as_ref().map_or(0, |topics| topics.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_codec::PublishProperties;

    fn publish(topic: &str, alias: Option<u16>) -> Publish {
        Publish {
            topic: topic.to_owned(),
            properties: PublishProperties {
                topic_alias: alias,
                ..PublishProperties::default()
            },
            ..Publish::default()
        }
    }

    #[test]
    fn alias_zero_is_invalid() {
        // [MQTT-3.3.2-8]
        let mut aliases = InboundAliases::new(10);
        let mut packet = publish("a/b", Some(0));
        assert_eq!(
            aliases.resolve(&mut packet),
            Err(ReasonCode::TOPIC_ALIAS_INVALID)
        );
    }

    #[test]
    fn alias_above_maximum_is_invalid() {
        // [MQTT-3.3.2-9]
        let mut aliases = InboundAliases::new(10);
        assert_eq!(
            aliases.resolve(&mut publish("a/b", Some(11))),
            Err(ReasonCode::TOPIC_ALIAS_INVALID)
        );
        // [MQTT-3.3.2-12]: every alias from 1 to the maximum is accepted.
        assert_eq!(aliases.resolve(&mut publish("a/b", Some(10))), Ok(()));
        assert_eq!(aliases.resolve(&mut publish("a/b", Some(1))), Ok(()));
    }

    #[test]
    fn maximum_zero_accepts_no_alias() {
        let mut aliases = InboundAliases::new(0);
        assert_eq!(
            aliases.resolve(&mut publish("a/b", Some(1))),
            Err(ReasonCode::TOPIC_ALIAS_INVALID)
        );
    }

    #[test]
    fn topic_with_alias_sets_the_mapping_and_empty_topic_uses_it() {
        let mut aliases = InboundAliases::new(5);
        let mut first = publish("sensors/1/temperature", Some(3));
        assert_eq!(aliases.resolve(&mut first), Ok(()));
        assert_eq!(first.topic, "sensors/1/temperature");
        assert_eq!(first.properties.topic_alias, None);

        let mut second = publish("", Some(3));
        assert_eq!(aliases.resolve(&mut second), Ok(()));
        assert_eq!(second.topic, "sensors/1/temperature");
        assert_eq!(second.properties.topic_alias, None);
        assert_eq!(aliases.len(), 1);
    }

    #[test]
    fn a_mapping_can_be_replaced() {
        let mut aliases = InboundAliases::new(5);
        aliases
            .resolve(&mut publish("first/topic", Some(2)))
            .unwrap();
        aliases.resolve(&mut publish("x", Some(2))).unwrap();
        let mut packet = publish("", Some(2));
        aliases.resolve(&mut packet).unwrap();
        assert_eq!(packet.topic, "x");
    }

    #[test]
    fn empty_topic_with_unknown_alias_is_a_protocol_error() {
        let mut aliases = InboundAliases::new(5);
        let mut packet = publish("", Some(4));
        assert_eq!(
            aliases.resolve(&mut packet),
            Err(ReasonCode::PROTOCOL_ERROR)
        );
        assert_eq!(packet.properties.topic_alias, Some(4), "left as it was");
    }

    #[test]
    fn empty_topic_without_alias_is_a_protocol_error() {
        let mut aliases = InboundAliases::new(5);
        assert_eq!(
            aliases.resolve(&mut publish("", None)),
            Err(ReasonCode::PROTOCOL_ERROR)
        );
        assert_eq!(aliases.resolve(&mut publish("t", None)), Ok(()));
    }

    #[test]
    fn a_new_connection_starts_without_mappings() {
        // [MQTT-3.3.2-7]: the broker makes a new InboundAliases per connection.
        let mut first_connection = InboundAliases::new(5);
        first_connection
            .resolve(&mut publish("t", Some(1)))
            .unwrap();
        let mut second_connection = InboundAliases::new(5);
        assert_eq!(
            second_connection.resolve(&mut publish("", Some(1))),
            Err(ReasonCode::PROTOCOL_ERROR)
        );
    }
}
