//! Forms: asking fields one by one, re-asking after an invalid answer,
//! confirming, and giving up.

use super::{Run, definition_error};
use crate::text::normalize;
use crate::workflow::definition::{DEFAULT_MAX_ATTEMPTS, FieldSpec, FieldType};
use crate::workflow::fields::parse_answer;
use crate::workflow::instance::{Effect, EventName, FormProgress, Status, StepError};
use crate::workflow::validate::{COMPLETE, HANDOFF};
use serde_json::{Value, json};

impl Run<'_> {
    pub(super) fn message(&mut self, text: &str) -> Result<(), StepError> {
        if self.state.status != Status::Active {
            return Ok(());
        }
        let Some(progress) = self.state.form.clone() else {
            return Ok(());
        };
        self.consumed = true;
        self.message = Some(text.to_string());
        let folded = normalize(text);
        let folded = folded.trim_end_matches(['.', '!']);
        if self
            .def
            .cancel_words()
            .iter()
            .any(|w| normalize(w) == folded)
        {
            self.cancel("cancel_word");
            return Ok(());
        }
        let spec = self.spec()?;
        let form = spec.form.as_ref().ok_or_else(|| {
            definition_error(
                format!("states.{}.form", self.state.state),
                "the state has no form",
            )
        })?;
        if progress.confirming {
            let yes_no = FieldSpec::of(FieldType::Boolean);
            return match parse_answer(&yes_no, text) {
                Ok(Value::Bool(true)) => {
                    self.state.form = None;
                    self.follow(Some(COMPLETE.to_string()))
                }
                Ok(_) => {
                    for field in &form.fields {
                        self.state.fields.remove(field);
                    }
                    let auto = self.ask_next()?;
                    self.follow(auto)
                }
                Err(_) => {
                    let attempts = progress.attempts + 1;
                    if attempts >= DEFAULT_MAX_ATTEMPTS {
                        return self.give_up("confirm");
                    }
                    self.state.form = Some(FormProgress {
                        attempts,
                        ..progress
                    });
                    let confirm = form.confirm.as_deref().unwrap_or("");
                    let text = self.render(confirm);
                    self.send(text);
                    Ok(())
                }
            };
        }
        let name = form.fields.get(progress.field).ok_or_else(|| {
            definition_error(
                format!("states.{}.form.fields", self.state.state),
                "no such field",
            )
        })?;
        let field = self.def.fields.get(name).ok_or_else(|| {
            definition_error(format!("fields.{name}"), "the field is not declared")
        })?;
        match parse_answer(field, text) {
            Ok(value) => {
                self.state.fields.insert(name.clone(), value.clone());
                self.emit(
                    EventName::FieldSet,
                    json!({ "field": name, "value": value }),
                );
                let auto = self.ask_next()?;
                self.follow(auto)
            }
            Err(rejection) => {
                let attempts = progress.attempts + 1;
                self.emit(
                    EventName::FieldRejected,
                    json!({ "field": name, "reason": rejection.reason, "attempts": attempts }),
                );
                if attempts >= field.max_attempts() {
                    return self.give_up(name);
                }
                self.state.form = Some(FormProgress {
                    attempts,
                    ..progress
                });
                let prompt = match &field.retry {
                    Some(retry) => self.render(retry),
                    None => self.question(name),
                };
                self.send(prompt);
                Ok(())
            }
        }
    }

    /// A field's question; a choice lists its options, numbered.
    fn question(&self, name: &str) -> String {
        let Some(field) = self.def.fields.get(name) else {
            return String::new();
        };
        let mut text = self.render(field.ask.as_deref().unwrap_or(name));
        if field.kind == FieldType::Choice {
            for (i, option) in field.options.iter().flatten().enumerate() {
                text.push_str(&format!("\n{}. {option}", i + 1));
            }
        }
        text
    }

    /// Asks the form's first field without a value, else the confirmation;
    /// `complete` when there is nothing left to ask.
    pub(super) fn ask_next(&mut self) -> Result<Option<String>, StepError> {
        let spec = self.spec()?;
        let Some(form) = &spec.form else {
            self.state.form = None;
            return Ok(None);
        };
        let next = form
            .fields
            .iter()
            .position(|f| !self.state.fields.contains_key(f));
        if let Some(index) = next {
            self.state.form = Some(FormProgress {
                field: index,
                ..FormProgress::default()
            });
            let question = self.question(&form.fields[index]);
            self.send(question);
            return Ok(None);
        }
        if let Some(confirm) = &form.confirm {
            self.state.form = Some(FormProgress {
                field: form.fields.len(),
                attempts: 0,
                confirming: true,
            });
            let text = self.render(confirm);
            self.send(text);
            return Ok(None);
        }
        self.state.form = None;
        Ok(Some(COMPLETE.to_string()))
    }

    fn give_up(&mut self, field: &str) -> Result<(), StepError> {
        let spec = self.spec()?;
        let target = spec.on_give_up.as_deref().unwrap_or(HANDOFF);
        self.state.form = None;
        if target == HANDOFF {
            self.effects.push(Effect::Handoff {
                reason: Some(format!("the form gave up at `{field}`")),
            });
            self.cancel("gave_up");
            return Ok(());
        }
        let auto = self.move_to("give_up", target, &[])?;
        self.follow(auto)
    }
}
