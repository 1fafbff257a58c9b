//! One turn's decision, from plain facts: stay silent, answer from a rule or
//! the fallback reply, or ask the LLM; and what a reply looks like once the
//! output filters have been applied. The worker gathers the facts and carries
//! out the plan; nothing here does IO.

use uuid::Uuid;

use crate::filters;
use crate::guard::RateVerdict;
use crate::handoff::ConversationState;
use crate::rules::{Action, RuleSpec};
use crate::template::{Vars, render_with_missing};

/// Whether the LLM may answer this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiAvailability {
    /// The bot has no AI profile.
    NotConfigured,
    /// The tenant's monthly token budget is spent: rules and fallback only.
    BudgetExhausted,
    Ready,
}

/// What the worker knows when a turn starts.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    pub state: ConversationState,
    pub rate: RateVerdict,
    /// The rule that matched the message, if any.
    pub matched: Option<&'a RuleSpec>,
    /// The workflow definition whose conversation trigger the message
    /// matched, if any: it starts when no rule matched, before the LLM.
    pub workflow: Option<Uuid>,
    pub ai: AiAvailability,
    pub fallback_reply: &'a str,
    pub rate_notice: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Say nothing; the reason is logged and shown in dry runs.
    Silent(&'static str),
    /// Answer without the LLM.
    Reply(Reply),
    /// Start the workflow whose conversation trigger matched: its first
    /// question answers.
    StartWorkflow { definition_id: Uuid },
    /// Ask the LLM; a rule may have added instructions.
    AskLlm {
        instructions: Option<String>,
        rule_id: Option<Uuid>,
        set_variable: Option<(String, String)>,
    },
}

/// A reply decided without the LLM, and what the rule changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub text: Option<String>,
    pub media_url: Option<String>,
    pub rule_id: Option<Uuid>,
    /// A conversation variable to set (name, rendered value).
    pub set_variable: Option<(String, String)>,
    /// Hand the conversation to a human after this reply.
    pub handoff: bool,
    /// This is the one-time notice of the per-contact rate limit.
    pub rate_notice: bool,
    /// The rule's reply rendered empty, so the fallback reply answers
    /// instead: the paths of the placeholders that had no value.
    pub reply_rendered_empty: Option<Vec<String>>,
}

/// What the turn does, with what an author should know about the templates
/// used: each placeholder that had no value (`reply: {{contact.name}} had
/// no value …`), and a reply that came out empty.
pub fn plan(s: &Situation<'_>, vars: &Vars) -> (Plan, Vec<String>) {
    let mut warnings = Vec::new();
    let plan = plan_noting(s, vars, &mut warnings);
    (plan, warnings)
}

fn plan_noting(s: &Situation<'_>, vars: &Vars, warnings: &mut Vec<String>) -> Plan {
    match s.state {
        ConversationState::Human => return Plan::Silent("a human has the conversation"),
        ConversationState::Closed => return Plan::Silent("the conversation is closed"),
        ConversationState::Bot => {}
    }
    match s.rate {
        RateVerdict::Silent => return Plan::Silent("the contact is over the rate limit"),
        RateVerdict::Notice => {
            return Plan::Reply(Reply {
                text: Some(s.rate_notice.to_string()),
                rate_notice: true,
                ..Reply::default()
            });
        }
        RateVerdict::Allow => {}
    }
    let fallback = || Reply {
        text: Some(s.fallback_reply.to_string()),
        ..Reply::default()
    };
    let Some(rule) = s.matched else {
        if let Some(definition_id) = s.workflow {
            return Plan::StartWorkflow { definition_id };
        }
        return match s.ai {
            AiAvailability::Ready => Plan::AskLlm {
                instructions: None,
                rule_id: None,
                set_variable: None,
            },
            _ => Plan::Reply(fallback()),
        };
    };
    let mut reply_missing = Vec::new();
    let mut render = |field: &str, template: &str| {
        let (text, missing) = render_with_missing(template, vars);
        for m in missing {
            warnings.push(format!("{field}: {m}"));
            if field == "reply" {
                reply_missing.push(m.path);
            }
        }
        text
    };
    let asks_llm =
        matches!(rule.action, Some(Action::AskLlm { .. })) && s.ai == AiAvailability::Ready;
    // The LLM answers instead of the reply when it is asked.
    let written = rule
        .reply
        .as_deref()
        .filter(|t| !t.trim().is_empty() && !asks_llm);
    let text = written.and_then(|t| filters::clean_reply(&render("reply", t)));
    let set_variable = match &rule.action {
        Some(Action::SetVariable { name, value }) => {
            Some((name.clone(), render("action.value", value)))
        }
        _ => None,
    };
    match &rule.action {
        Some(Action::AskLlm { instructions }) if asks_llm => Plan::AskLlm {
            instructions: Some(render("action.instructions", instructions))
                .filter(|i| !i.trim().is_empty()),
            rule_id: Some(rule.id),
            set_variable,
        },
        action => {
            let handoff = matches!(action, Some(Action::Handoff));
            let mut reply = Reply {
                text,
                media_url: rule.media_url.clone(),
                rule_id: Some(rule.id),
                set_variable,
                handoff,
                rate_notice: false,
                reply_rendered_empty: None,
            };
            // A reply that renders empty (its values missing) would leave
            // the contact with no answer at all: the fallback reply answers.
            if written.is_some() && reply.text.is_none() && reply.media_url.is_none() {
                warnings.push(
                    "reply: the rule's reply rendered empty: the fallback reply goes instead"
                        .into(),
                );
                reply.text = Some(s.fallback_reply.to_string());
                reply.reply_rendered_empty = Some(reply_missing);
            }
            // A rule that meant to ask the LLM, when the LLM may not answer,
            // and has no text of its own: the fallback reply answers.
            if matches!(action, Some(Action::AskLlm { .. }))
                && reply.text.is_none()
                && reply.media_url.is_none()
            {
                reply.text = Some(s.fallback_reply.to_string());
            }
            Plan::Reply(reply)
        }
    }
}

/// A reply as it goes out: cleaned, checked against the blocked phrases (a
/// blocked reply is replaced by the fallback reply) and split to the
/// channel's length limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub parts: Vec<String>,
    /// The blocked phrase that replaced the reply, if one did.
    pub blocked: Option<String>,
}

pub fn finish(text: &str, blocked_phrases: &[String], fallback: &str, channel: &str) -> Finished {
    let limit = filters::channel_limit(channel);
    let (text, blocked) = match filters::blocked_phrase(text, blocked_phrases) {
        Some(p) => (fallback, Some(p.to_string())),
        None => (text, None),
    };
    let parts = match filters::clean_reply(text) {
        Some(t) => filters::split_for_limit(&t, limit),
        None => Vec::new(),
    };
    Finished { parts, blocked }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::MatchKind;

    fn rule(reply: Option<&str>, action: Option<Action>) -> RuleSpec {
        RuleSpec {
            id: Uuid::from_u128(7),
            priority: 0,
            match_kind: MatchKind::Contains,
            pattern: Some("price".into()),
            keywords: vec![],
            condition: None,
            reply: reply.map(String::from),
            media_url: None,
            action,
            active: true,
        }
    }

    fn situation<'a>(matched: Option<&'a RuleSpec>, ai: AiAvailability) -> Situation<'a> {
        Situation {
            state: ConversationState::Bot,
            rate: RateVerdict::Allow,
            matched,
            workflow: None,
            ai,
            fallback_reply: "Sorry?",
            rate_notice: "Slow down",
        }
    }

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("contact.name", "Ana");
        v
    }

    #[test]
    fn a_human_or_a_closed_conversation_keeps_the_bot_silent() {
        let r = rule(Some("x"), None);
        for state in [ConversationState::Human, ConversationState::Closed] {
            let s = Situation {
                state,
                ..situation(Some(&r), AiAvailability::Ready)
            };
            assert!(matches!(plan(&s, &vars()).0, Plan::Silent(_)));
        }
    }

    #[test]
    fn over_the_rate_limit_one_notice_then_silence() {
        let s = Situation {
            rate: RateVerdict::Notice,
            ..situation(None, AiAvailability::Ready)
        };
        let Plan::Reply(r) = plan(&s, &vars()).0 else {
            panic!("a notice")
        };
        assert_eq!(r.text.as_deref(), Some("Slow down"));
        assert!(r.rate_notice);
        let s = Situation {
            rate: RateVerdict::Silent,
            ..situation(None, AiAvailability::Ready)
        };
        assert!(matches!(plan(&s, &vars()).0, Plan::Silent(_)));
    }

    /// Guards, then rules, then workflow triggers, then the LLM.
    #[test]
    fn a_workflow_trigger_starts_when_no_rule_matched_and_before_the_llm() {
        let definition_id = Uuid::now_v7();
        let with_trigger = Situation {
            workflow: Some(definition_id),
            ..situation(None, AiAvailability::Ready)
        };
        assert_eq!(
            plan(&with_trigger, &vars()).0,
            Plan::StartWorkflow { definition_id }
        );
        let r = rule(Some("x"), None);
        let rule_first = Situation {
            matched: Some(&r),
            ..with_trigger.clone()
        };
        assert!(matches!(plan(&rule_first, &vars()).0, Plan::Reply(_)));
        let handed_off = Situation {
            state: ConversationState::Human,
            ..with_trigger
        };
        assert!(matches!(plan(&handed_off, &vars()).0, Plan::Silent(_)));
    }

    #[test]
    fn a_matching_rule_answers_with_its_rendered_reply() {
        let r = rule(Some("Hi {{contact.name}}, it is 5 €"), None);
        let Plan::Reply(reply) = plan(&situation(Some(&r), AiAvailability::Ready), &vars()).0
        else {
            panic!("a reply")
        };
        assert_eq!(reply.text.as_deref(), Some("Hi Ana, it is 5 €"));
        assert_eq!(reply.rule_id, Some(r.id));
        assert!(!reply.handoff);
    }

    #[test]
    fn no_rule_asks_the_llm_when_it_may_and_the_fallback_otherwise() {
        assert!(matches!(
            plan(&situation(None, AiAvailability::Ready), &vars()).0,
            Plan::AskLlm { rule_id: None, .. }
        ));
        for ai in [
            AiAvailability::NotConfigured,
            AiAvailability::BudgetExhausted,
        ] {
            let Plan::Reply(r) = plan(&situation(None, ai), &vars()).0 else {
                panic!("fallback")
            };
            assert_eq!(r.text.as_deref(), Some("Sorry?"));
            assert_eq!(r.rule_id, None);
        }
    }

    #[test]
    fn rule_actions_hand_off_set_variables_and_ask_the_llm() {
        let r = rule(Some("A person will answer"), Some(Action::Handoff));
        let Plan::Reply(reply) = plan(&situation(Some(&r), AiAvailability::Ready), &vars()).0
        else {
            panic!()
        };
        assert!(reply.handoff);
        assert_eq!(reply.text.as_deref(), Some("A person will answer"));

        let r = rule(
            Some("Noted"),
            Some(Action::SetVariable {
                name: "customer".into(),
                value: "{{contact.name}}".into(),
            }),
        );
        let Plan::Reply(reply) = plan(&situation(Some(&r), AiAvailability::Ready), &vars()).0
        else {
            panic!()
        };
        assert_eq!(reply.set_variable, Some(("customer".into(), "Ana".into())));

        let r = rule(
            None,
            Some(Action::AskLlm {
                instructions: "Quote prices for {{contact.name}}".into(),
            }),
        );
        assert_eq!(
            plan(&situation(Some(&r), AiAvailability::Ready), &vars()).0,
            Plan::AskLlm {
                instructions: Some("Quote prices for Ana".into()),
                rule_id: Some(r.id),
                set_variable: None
            }
        );
        // Without the LLM, such a rule falls back.
        let Plan::Reply(reply) = plan(
            &situation(Some(&r), AiAvailability::BudgetExhausted),
            &vars(),
        )
        .0
        else {
            panic!()
        };
        assert_eq!(reply.text.as_deref(), Some("Sorry?"));
    }

    #[test]
    fn a_reply_that_renders_empty_gives_the_fallback_and_says_why() {
        let nameless = {
            let mut v = Vars::new();
            v.set("contact.name", "");
            v
        };
        let r = rule(Some("  {{contact.name}} "), None);
        let (planned, warnings) = plan(&situation(Some(&r), AiAvailability::Ready), &nameless);
        let Plan::Reply(reply) = planned else {
            panic!("a reply")
        };
        assert_eq!(reply.text.as_deref(), Some("Sorry?"));
        assert_eq!(reply.rule_id, Some(r.id));
        assert_eq!(
            reply.reply_rendered_empty,
            Some(vec!["contact.name".to_string()])
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("reply: {{contact.name}} had no value"));
        assert!(warnings[1].contains("fallback"));

        // With a default, or a value, nothing is missing.
        let r = rule(
            Some(r#"We open at 9, {{contact.name | default: "there"}}."#),
            None,
        );
        let (planned, warnings) = plan(&situation(Some(&r), AiAvailability::Ready), &nameless);
        let Plan::Reply(reply) = planned else {
            panic!()
        };
        assert_eq!(reply.text.as_deref(), Some("We open at 9, there."));
        assert_eq!(reply.reply_rendered_empty, None);
        assert_eq!(
            warnings,
            vec![r#"reply: {{contact.name}} had no value: its default "there" was used"#]
        );
        let (_, warnings) = plan(&situation(Some(&r), AiAvailability::Ready), &vars());
        assert!(warnings.is_empty());

        // Media still goes: not silent, so no fallback.
        let mut r = rule(Some("{{contact.name}}"), None);
        r.media_url = Some("https://cdn.example.com/menu.png".into());
        let Plan::Reply(reply) = plan(&situation(Some(&r), AiAvailability::Ready), &nameless).0
        else {
            panic!()
        };
        assert_eq!(reply.text, None);
        assert_eq!(reply.reply_rendered_empty, None);

        // A rule without a reply (a quiet hand-off) stays quiet.
        let r = rule(None, Some(Action::Handoff));
        let Plan::Reply(reply) = plan(&situation(Some(&r), AiAvailability::Ready), &nameless).0
        else {
            panic!()
        };
        assert_eq!(reply.text, None);
        assert!(reply.handoff);
    }

    #[test]
    fn warnings_name_the_action_fields() {
        let r = rule(
            None,
            Some(Action::SetVariable {
                name: "who".into(),
                value: "{{contact.name}}".into(),
            }),
        );
        let (_, warnings) = plan(&situation(Some(&r), AiAvailability::Ready), &Vars::new());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("action.value: {{contact.name}}"));
        let r = rule(
            Some("ignored when the LLM answers: {{nothing}}"),
            Some(Action::AskLlm {
                instructions: "Ask {{vars.topic | default: \"what they need\"}}".into(),
            }),
        );
        let (plan, warnings) = plan(&situation(Some(&r), AiAvailability::Ready), &Vars::new());
        assert!(
            matches!(plan, Plan::AskLlm { instructions: Some(i), .. } if i == "Ask what they need")
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("action.instructions: {{vars.topic}}"));
    }

    #[test]
    fn finishing_blocks_phrases_and_splits_to_the_channel_limit() {
        let blocked = vec!["competitor".to_string()];
        let f = finish(
            "Try our COMPETITOR instead",
            &blocked,
            "Sorry?",
            "whatsapp_cloud",
        );
        assert_eq!(f.parts, vec!["Sorry?".to_string()]);
        assert_eq!(f.blocked.as_deref(), Some("competitor"));

        let long = "One sentence here. ".repeat(100);
        let f = finish(&long, &blocked, "Sorry?", "instagram");
        assert!(f.parts.len() >= 2);
        assert!(f.parts.iter().all(|p| p.chars().count() <= 1000));
        assert!(f.parts.iter().all(|p| p.ends_with('.')));

        assert!(finish("   ", &blocked, "Sorry?", "web").parts.is_empty());
    }
}
