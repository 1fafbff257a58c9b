//! The system prompt the LLM gets: the bot's persona plus any per-rule
//! instructions, rendered with the conversation's variables.

use crate::template::{self, Vars};
use serde::{Deserialize, Serialize};

/// How the bot presents itself to the LLM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Persona {
    pub name: String,
    pub tone: Option<String>,
    pub interests: Vec<String>,
    pub language: Option<String>,
    /// A custom system prompt template; the default one is used when unset.
    pub system_prompt: Option<String>,
}

const DEFAULT_SYSTEM_PROMPT: &str = "\
You are {{persona.name}}, answering customers on a messaging app.
You are talking with {{contact.name}}.
Your tone is {{persona.tone}}.
You know most about: {{persona.interests}}.
Answer in {{persona.language}}.
Keep replies short and conversational, like chat messages. Never invent facts, prices, links or promises: if you are not sure, say so and offer to connect the person with a human.";

/// The default system prompt template. When it is used, each line whose
/// placeholders render empty (no tone set, unknown contact name…) is left
/// out, so the prompt never says "Your tone is ."
pub fn default_system_prompt() -> &'static str {
    DEFAULT_SYSTEM_PROMPT
}

/// Sets `persona.name`, `persona.tone`, `persona.language` and
/// `persona.interests` (joined with ", "); unset values become "".
pub fn persona_vars(persona: &Persona, vars: &mut Vars) {
    vars.set("persona.name", persona.name.trim());
    vars.set("persona.tone", persona.tone.as_deref().unwrap_or("").trim());
    vars.set(
        "persona.language",
        persona.language.as_deref().unwrap_or("").trim(),
    );
    let interests: Vec<&str> = persona
        .interests
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    vars.set("persona.interests", interests.join(", "));
}

/// Renders the persona's system prompt (or the default) with `vars`, and
/// appends `extra_instructions` (from a rule's ask_llm action) as a
/// separate paragraph. If `vars` has no `persona` yet, the persona's
/// values are added for rendering.
///
/// Also answers each placeholder of a custom system prompt that had no value
/// (`persona.system_prompt: {{contact.name}} had no value …`); the default
/// prompt leaves out the lines it cannot fill, so it warns of nothing.
pub fn system_prompt(
    persona: &Persona,
    vars: &Vars,
    extra_instructions: Option<&str>,
) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    let with_persona;
    let vars = if vars.get("persona").is_some() {
        vars
    } else {
        let mut v = vars.clone();
        persona_vars(persona, &mut v);
        with_persona = v;
        &with_persona
    };
    let mut prompt = match persona
        .system_prompt
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        Some(custom) => {
            let (text, missing) = template::render_with_missing(custom, vars);
            warnings.extend(
                missing
                    .iter()
                    .map(|m| format!("persona.system_prompt: {m}")),
            );
            text.trim().to_string()
        }
        None => DEFAULT_SYSTEM_PROMPT
            .lines()
            .filter_map(|line| template::render_all_present(line, vars))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if let Some(extra) = extra_instructions.map(str::trim).filter(|e| !e.is_empty()) {
        if !prompt.is_empty() {
            prompt.push_str("\n\n");
        }
        prompt.push_str(extra);
    }
    (prompt, warnings)
}

/// Checks the persona's templates for the API: the custom system prompt's
/// syntax, and that it only names known variables. Errors name the field
/// (`persona.system_prompt`).
pub fn validate_persona(persona: &Persona) -> Result<(), (&'static str, String)> {
    if let Some(t) = &persona.system_prompt {
        let field = "persona.system_prompt";
        template::check(t).map_err(|e| (field, e.to_string()))?;
        crate::variables::check_template(t).map_err(|e| (field, e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona() -> Persona {
        Persona {
            name: "Lia".into(),
            tone: Some("warm and direct".into()),
            interests: vec!["pizza".into(), " ".into(), "delivery times".into()],
            language: Some("Portuguese".into()),
            system_prompt: None,
        }
    }

    #[test]
    fn default_prompt_uses_all_placeholders() {
        let d = default_system_prompt();
        for p in [
            "persona.name",
            "persona.tone",
            "persona.language",
            "persona.interests",
            "contact.name",
        ] {
            assert!(d.contains(&format!("{{{{{p}}}}}")), "{p}");
        }
        assert_eq!(template::check(d), Ok(()));
    }

    #[test]
    fn persona_vars_are_set() {
        let mut v = Vars::new();
        persona_vars(&persona(), &mut v);
        assert_eq!(v.get("persona.name").unwrap(), "Lia");
        assert_eq!(v.get("persona.interests").unwrap(), "pizza, delivery times");
        persona_vars(&Persona::default(), &mut v);
        assert_eq!(v.get("persona.tone").unwrap(), "");
        assert_eq!(v.get("persona.interests").unwrap(), "");
    }

    #[test]
    fn default_prompt_renders_fully() {
        let mut v = Vars::new();
        v.set("contact.name", "Ana");
        persona_vars(&persona(), &mut v);
        let p = system_prompt(&persona(), &v, None).0;
        assert!(p.starts_with("You are Lia, "), "{p}");
        assert!(p.contains("talking with Ana."), "{p}");
        assert!(p.contains("Your tone is warm and direct."), "{p}");
        assert!(p.contains("pizza, delivery times"), "{p}");
        assert!(p.contains("Answer in Portuguese."), "{p}");
        assert!(!p.contains("{{"), "{p}");
    }

    #[test]
    fn default_prompt_drops_lines_with_missing_values() {
        let persona = Persona {
            name: "Lia".into(),
            ..Persona::default()
        };
        // No persona in vars: filled in from the persona.
        let p = system_prompt(&persona, &Vars::new(), None).0;
        assert!(p.starts_with("You are Lia, "), "{p}");
        assert!(!p.contains("tone"), "{p}");
        assert!(!p.contains("talking with"), "{p}");
        assert!(!p.contains("Answer in"), "{p}");
        assert!(p.contains("Never invent"), "{p}");
    }

    #[test]
    fn custom_prompt_and_extra_instructions() {
        let mut persona = persona();
        persona.system_prompt = Some("You are {{persona.name}} for {{contact.name}}.{{x}}".into());
        let mut v = Vars::new();
        v.set("contact.name", "Ana");
        let p = system_prompt(&persona, &v, Some("  Offer the 2-for-1 deal.  ")).0;
        assert_eq!(p, "You are Lia for Ana.\n\nOffer the 2-for-1 deal.");
        assert_eq!(
            system_prompt(&persona, &v, Some("   ")).0,
            "You are Lia for Ana."
        );
        persona.system_prompt = Some("   ".into());
        assert!(
            system_prompt(&persona, &v, None)
                .0
                .starts_with("You are Lia, ")
        );
    }

    #[test]
    fn custom_prompts_warn_of_missing_values_and_unknown_names_are_refused() {
        let mut persona = persona();
        persona.system_prompt = Some(
            r#"You are {{persona.name}} for {{contact.name}}, plan {{vars.plan | default: "basic"}}."#
                .into(),
        );
        let (p, warnings) = system_prompt(&persona, &Vars::new(), None);
        assert_eq!(p, "You are Lia for , plan basic.");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("persona.system_prompt: {{contact.name}} had no value"));
        assert!(warnings[1].contains("default \"basic\""));
        assert_eq!(validate_persona(&persona), Ok(()));
        // The default prompt drops what it cannot fill, quietly.
        assert!(
            system_prompt(&Persona::default(), &Vars::new(), None)
                .1
                .is_empty()
        );

        persona.system_prompt = Some("You help {{contact.nmae}}.".into());
        let (field, message) = validate_persona(&persona).unwrap_err();
        assert_eq!(field, "persona.system_prompt");
        assert!(
            message.contains("`contact.nmae` is not a known name"),
            "{message}"
        );
        assert!(message.contains("known names: "), "{message}");
        persona.system_prompt = Some("You help {{contact.name".into());
        assert_eq!(
            validate_persona(&persona).unwrap_err().0,
            "persona.system_prompt"
        );
        assert_eq!(validate_persona(&Persona::default()), Ok(()));
    }

    #[test]
    fn values_are_not_re_rendered() {
        let persona = Persona {
            name: "{{contact.name}}".into(),
            ..Persona::default()
        };
        let mut v = Vars::new();
        v.set("contact.name", "Ana");
        assert!(
            system_prompt(&persona, &v, None)
                .0
                .starts_with("You are {{contact.name}}, ")
        );
    }

    #[test]
    fn serde_defaults() {
        let p: Persona = serde_json::from_str(r#"{"name": "Lia"}"#).unwrap();
        assert_eq!(p.name, "Lia");
        assert!(p.interests.is_empty());
    }
}
