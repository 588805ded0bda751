//! Colours as named roles, with methods that return the style for a meaning
//! (`theme.countdown(left, total)`), so screens never pick colours themselves.
//! `NO_COLOR` gives a theme with no colour at all, only emphasis.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::TimeDelta;
use hoist_api::{GrantState, RequestState};
use ratatui::style::{Color, Modifier, Style};

use crate::app::WARN_AT;

/// Time left at which a countdown turns to danger (it turns to warning at
/// [`WARN_AT`], when the holder is warned).
pub const DANGER_AT: TimeDelta = TimeDelta::minutes(1);

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub color: bool,
    pub accent: Color,
    pub muted: Color,
    pub ok: Color,
    pub warn: Color,
    pub danger: Color,
    pub break_glass: Color,
    pub selection: Color,
    pub favourite: Color,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            color: true,
            accent: Color::Cyan,
            muted: Color::DarkGray,
            ok: Color::Green,
            warn: Color::Yellow,
            danger: Color::Red,
            break_glass: Color::LightRed,
            selection: Color::Rgb(40, 44, 60),
            favourite: Color::Yellow,
        }
    }
}

impl Theme {
    /// The default theme with the config's overrides (`accent = "magenta"`,
    /// `ok = "#00ff88"`); unknown names or colours are reported, not ignored.
    pub fn from_config(
        overrides: &BTreeMap<String, String>,
        no_color: bool,
    ) -> Result<Theme, String> {
        let mut theme = Theme::default();
        for (name, value) in overrides {
            let color = Color::from_str(value)
                .map_err(|_| format!("theme.{name}: `{value}` is not a colour"))?;
            let slot = match name.as_str() {
                "accent" => &mut theme.accent,
                "muted" => &mut theme.muted,
                "ok" => &mut theme.ok,
                "warn" => &mut theme.warn,
                "danger" => &mut theme.danger,
                "break_glass" => &mut theme.break_glass,
                "selection" => &mut theme.selection,
                "favourite" => &mut theme.favourite,
                other => return Err(format!("theme.{other}: unknown colour name")),
            };
            *slot = color;
        }
        theme.color = !no_color;
        Ok(theme)
    }

    pub fn monochrome() -> Theme {
        Theme {
            color: false,
            ..Theme::default()
        }
    }

    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn text(&self) -> Style {
        Style::new()
    }

    pub fn muted(&self) -> Style {
        if self.color {
            self.fg(self.muted)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn title(&self) -> Style {
        self.fg(self.accent).add_modifier(Modifier::BOLD)
    }

    pub fn key(&self) -> Style {
        self.fg(self.accent).add_modifier(Modifier::BOLD)
    }

    pub fn selected(&self) -> Style {
        if self.color {
            Style::new().bg(self.selection).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn ok(&self) -> Style {
        self.fg(self.ok)
    }

    pub fn warn(&self) -> Style {
        self.fg(self.warn).add_modifier(Modifier::BOLD)
    }

    pub fn danger(&self) -> Style {
        self.fg(self.danger).add_modifier(Modifier::BOLD)
    }

    /// A risk tier's badge: the most critical in the danger colour, down
    /// to the least in the muted one, so a glance ranks roles by risk.
    pub fn tier(&self, tier: u8) -> Style {
        match tier {
            0 => self.danger().add_modifier(Modifier::REVERSED),
            1 => self.warn(),
            2 => self.fg(self.accent),
            _ => self.muted(),
        }
    }

    pub fn break_glass(&self) -> Style {
        self.fg(self.break_glass).add_modifier(Modifier::BOLD)
    }

    pub fn favourite(&self) -> Style {
        self.fg(self.favourite)
    }

    /// The colour of time left: calm, then warning, then danger near the end.
    pub fn countdown(&self, left: TimeDelta) -> Style {
        if left <= DANGER_AT {
            self.danger()
        } else if left <= WARN_AT {
            self.warn()
        } else {
            self.ok()
        }
    }

    pub fn request_state(&self, state: RequestState) -> Style {
        match state {
            RequestState::Pending | RequestState::Approved => self.warn(),
            RequestState::Active => self.ok().add_modifier(Modifier::BOLD),
            RequestState::Denied | RequestState::Revoked => self.danger(),
            RequestState::Expired | RequestState::Cancelled | RequestState::TimedOut => {
                self.muted()
            }
        }
    }

    pub fn grant_state(&self, state: GrantState) -> Style {
        match state {
            GrantState::Active => self.ok(),
            GrantState::Expired => self.muted(),
            GrantState::Revoked => self.danger(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_ones_are_named() {
        let mut overrides = BTreeMap::new();
        overrides.insert("accent".to_string(), "magenta".to_string());
        assert_eq!(
            Theme::from_config(&overrides, false).unwrap().accent,
            Color::Magenta
        );
        overrides.insert("accent".to_string(), "sparkly".to_string());
        assert!(
            Theme::from_config(&overrides, false)
                .unwrap_err()
                .contains("sparkly")
        );
        overrides.clear();
        overrides.insert("glow".to_string(), "red".to_string());
        assert!(
            Theme::from_config(&overrides, false)
                .unwrap_err()
                .contains("glow")
        );
    }

    #[test]
    fn no_color_means_no_colour() {
        let theme = Theme::from_config(&BTreeMap::new(), true).unwrap();
        for style in [
            theme.ok(),
            theme.danger(),
            theme.countdown(TimeDelta::seconds(5)),
            theme.title(),
        ] {
            assert_eq!((style.fg, style.bg), (None, None));
        }
    }

    #[test]
    fn countdown_turns_red_near_the_end() {
        let theme = Theme::default();
        assert_eq!(
            theme.countdown(TimeDelta::minutes(20)).fg,
            Some(Color::Green)
        );
        assert_eq!(
            theme.countdown(TimeDelta::minutes(4)).fg,
            Some(Color::Yellow)
        );
        assert_eq!(theme.countdown(TimeDelta::seconds(30)).fg, Some(Color::Red));
    }
}
