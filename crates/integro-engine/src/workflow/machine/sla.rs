//! SLAs: deadlines in business time, warnings, breaches and pauses.

use super::{Run, definition_error};
use crate::workflow::calendar::{self, BusinessCalendar};
use crate::workflow::duration::parse_duration;
use crate::workflow::instance::{
    Effect, EventName, SlaClock, SlaKind, Status, StepContext, StepError,
};
use serde_json::json;

impl<'a> Run<'a> {
    fn calendar(&self) -> Result<Option<&'a BusinessCalendar>, StepError> {
        let ctx: &'a StepContext = self.ctx;
        let Some(name) = self
            .spec()?
            .sla
            .as_ref()
            .and_then(|s| s.calendar.as_deref())
        else {
            return Ok(None);
        };
        ctx.calendars
            .get(name)
            .map(Some)
            .ok_or_else(|| StepError::UnknownCalendar {
                name: name.to_string(),
            })
    }

    /// The SLA's warning and breach times, pauses included.
    fn sla_due(&self) -> Result<Option<(Option<i64>, i64)>, StepError> {
        let (Some(sla), Some(clock)) = (self.spec()?.sla.as_ref(), self.state.sla.as_ref()) else {
            return Ok(None);
        };
        let path = |key: &str| format!("states.{}.sla.{key}", self.state.state);
        let within = parse_duration(&sla.within)
            .map_err(|e| definition_error(path("within"), e.to_string()))?;
        let warn = match &sla.warn_before {
            Some(w) => Some(
                parse_duration(w)
                    .map_err(|e| definition_error(path("warn_before"), e.to_string()))?,
            ),
            None => None,
        };
        let calendar = self.calendar()?;
        let due = |business: i64| {
            calendar::add(
                calendar,
                clock.started_at_ms,
                business.saturating_add(clock.paused_ms),
            )
        };
        let warn_at = warn.filter(|w| *w < within).map(|w| due(within - w));
        Ok(Some((warn_at, due(within))))
    }

    pub(super) fn arm_sla_checks(&mut self) -> Result<(), StepError> {
        let Some((warn_at_ms, breach_at_ms)) = self.sla_due()? else {
            return Ok(());
        };
        let clock = self.state.sla.as_ref();
        let warned = clock.is_some_and(|c| c.warned);
        let calendar = self.spec()?.sla.as_ref().and_then(|s| s.calendar.clone());
        self.effects.push(Effect::ArmSla {
            warn_at_ms: warn_at_ms.filter(|_| !warned),
            breach_at_ms,
            seq: self.state.seq,
            calendar,
        });
        Ok(())
    }

    pub(super) fn sla(&mut self, kind: SlaKind, armed_seq: i64) -> Result<bool, StepError> {
        if self.state.status != Status::Active || armed_seq != self.state.seq {
            return Ok(false);
        }
        let Some(clock) = self.state.sla.clone() else {
            return Ok(false);
        };
        if clock.paused_since_ms.is_some() || clock.breached {
            return Ok(false);
        }
        let Some((warn_at, breach_at)) = self.sla_due()? else {
            return Ok(false);
        };
        let details = json!({ "breach_at_ms": breach_at });
        match kind {
            SlaKind::Warning => {
                if clock.warned || warn_at.is_none_or(|w| self.now < w) {
                    return Ok(false);
                }
                self.state.sla = Some(SlaClock {
                    warned: true,
                    ..clock
                });
                self.emit(EventName::SlaWarning, details);
            }
            SlaKind::Breach => {
                if self.now < breach_at {
                    return Ok(false);
                }
                // The warning's check came later than the breach's (a
                // worker down): the warning was due first, and is said first.
                if !clock.warned && warn_at.is_some() {
                    self.emit(EventName::SlaWarning, details.clone());
                }
                self.state.sla = Some(SlaClock {
                    warned: true,
                    breached: true,
                    ..clock
                });
                self.emit(EventName::SlaBreached, details);
                let spec = self.spec()?;
                if let Some(sla) = &spec.sla {
                    self.actions(&sla.on_breach, "sla_breach")?;
                }
            }
        }
        Ok(true)
    }

    /// The warning and breach whose times have passed and whose checks have
    /// not run yet, as those checks would have recorded them.
    pub(super) fn sla_checks_due(&mut self) -> Result<(), StepError> {
        let seq = self.state.seq;
        self.sla(SlaKind::Warning, seq)?;
        self.sla(SlaKind::Breach, seq)?;
        Ok(())
    }

    /// Stops or restarts the SLA clock as `pause_when` says now; a restart
    /// re-arms the checks for the later deadline. A condition that fails to
    /// evaluate counts as false.
    pub(super) fn update_sla_pause(&mut self) -> Result<(), StepError> {
        if self.state.status != Status::Active {
            return Ok(());
        }
        let Some(clock) = self.state.sla.clone().filter(|c| !c.breached) else {
            return Ok(());
        };
        let Some(pause) = self.spec()?.sla.as_ref().and_then(|s| s.pause_when.clone()) else {
            return Ok(());
        };
        let path = format!("states.{}.sla.pause_when", self.state.state);
        let paused = self.condition(path, &pause).unwrap_or(false);
        match (paused, clock.paused_since_ms) {
            (true, None) => {
                self.state.sla = Some(SlaClock {
                    paused_since_ms: Some(self.now),
                    ..clock
                });
            }
            (false, Some(since)) => {
                let calendar = self.calendar()?;
                let paused_ms = clock
                    .paused_ms
                    .saturating_add(calendar::elapsed(calendar, since, self.now));
                self.state.sla = Some(SlaClock {
                    paused_since_ms: None,
                    paused_ms,
                    ..clock
                });
                self.arm_sla = true;
            }
            _ => {}
        }
        Ok(())
    }
}
