//! Which channels keep history, and how much: `--history-size`/`--history-ttl`, overridden by
//! the first `[[history]]` rule of the configuration whose pattern matches the channel name.

use crate::{auth::authz::glob, config::HistoryConfig, engine::HistoryPolicy};

/// The history `channel` keeps; `None` when it keeps none.
pub(crate) fn policy(config: &HistoryConfig, channel: &str) -> Option<HistoryPolicy> {
    let rule = config
        .rules
        .iter()
        .find(|(pattern, _)| glob(pattern, channel))
        .map_or(&config.default, |(_, rule)| rule);
    (rule.size > 0).then_some(HistoryPolicy {
        size: rule.size,
        ttl: rule.ttl,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::HistoryRule;

    #[test]
    fn the_first_matching_rule_wins_and_size_zero_is_off() {
        let rule = |size, secs| HistoryRule {
            size,
            ttl: Duration::from_secs(secs),
        };
        let config = HistoryConfig {
            default: rule(0, 60),
            rules: vec![
                ("room-quiet".into(), rule(0, 1)),
                ("room-*".into(), rule(10, 5)),
                ("room-big".into(), rule(99, 5)),
            ],
        };
        assert_eq!(policy(&config, "news"), None);
        assert_eq!(policy(&config, "room-quiet"), None);
        assert_eq!(
            policy(&config, "room-big"),
            Some(HistoryPolicy {
                size: 10,
                ttl: Duration::from_secs(5)
            })
        );
        let all = HistoryConfig {
            default: rule(3, 60),
            rules: Vec::new(),
        };
        assert_eq!(policy(&all, "news").map(|p| p.size), Some(3));
    }
}
