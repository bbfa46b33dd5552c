//! Opening hours in a time zone, for the `outside_hours` matcher of an auto-reply rule.
//!
//! Written as `{"timezone": "Europe/Berlin", "open": {"mon-fri": "09:00-17:00", "sat":
//! "10:00-13:00,14:00-16:00"}}`: day keys are `mon`..`sun`, ranges (`mon-fri`, also across the
//! week's end: `fri-mon`) or comma lists (`sat,sun`); a value is one or more `HH:MM-HH:MM`
//! intervals, the end excluded (`24:00` allowed, an interval across midnight is refused: write
//! it as two days). A day no key names is closed. Time zones come from the IANA database built
//! into the binary (jiff's bundled copy), so the host's `/usr/share/zoneinfo` is not needed.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

/// Minutes since midnight, per weekday (Monday first): the open intervals `[from, to)`.
#[derive(Debug, Clone)]
pub struct Hours {
    zone: TimeZone,
    open: [Vec<(u16, u16)>; 7],
}

/// Most open intervals of one day.
pub const MAX_INTERVALS: usize = 48;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Hours {
    /// Parses the object; errors are `(field below it, rule)`.
    pub fn parse(value: &Value) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![(
                String::new(),
                "must be an object {\"timezone\", \"open\"}".into(),
            )]);
        };
        for key in object.keys() {
            if key != "timezone" && key != "open" {
                errors.push((
                    key.clone(),
                    "unknown field; expected timezone and open".into(),
                ));
            }
        }
        let zone = match object.get("timezone").and_then(Value::as_str) {
            None => {
                errors.push((
                    "timezone".into(),
                    "is required: an IANA time zone such as \"Europe/Berlin\" or \"UTC\"".into(),
                ));
                None
            }
            Some(name) => match TimeZone::get(name) {
                Ok(zone) => Some(zone),
                Err(_) => {
                    errors.push((
                        "timezone".into(),
                        format!(
                            "is not an IANA time zone name (found {name:?}; e.g. \"Europe/Berlin\", \"America/Sao_Paulo\", \"UTC\")"
                        ),
                    ));
                    None
                }
            },
        };
        let mut open: [Vec<(u16, u16)>; 7] = Default::default();
        match object.get("open").and_then(Value::as_object) {
            None => errors.push((
                "open".into(),
                "is required: an object of days and hours, such as {\"mon-fri\": \"09:00-17:00\"}"
                    .into(),
            )),
            Some(days) => {
                for (key, hours) in days {
                    let field = format!("open.{key}");
                    let Some(indexes) = parse_days(key) else {
                        errors.push((
                            field,
                            "is not a day, a range or a list of days (mon, tue, wed, thu, fri, sat, sun; e.g. mon-fri or sat,sun)"
                                .into(),
                        ));
                        continue;
                    };
                    let Some(intervals) = hours.as_str().and_then(parse_intervals) else {
                        errors.push((
                            field,
                            "must be a string of HH:MM-HH:MM intervals, comma-separated, each ending after it starts (e.g. \"09:00-12:30,13:30-18:00\"; 24:00 ends the day)"
                                .into(),
                        ));
                        continue;
                    };
                    for day in indexes {
                        open[day].extend(intervals.iter().copied());
                        if open[day].len() > MAX_INTERVALS {
                            errors.push((
                                format!("open.{key}"),
                                format!("gives a day more than {MAX_INTERVALS} intervals"),
                            ));
                            break;
                        }
                    }
                }
            }
        }
        match (zone, errors.is_empty()) {
            (Some(zone), true) => Ok(Self { zone, open }),
            _ => Err(errors),
        }
    }

    /// Whether `unix_secs` falls in an open interval of its day in the time zone.
    pub fn is_open(&self, unix_secs: i64) -> bool {
        let Ok(at) = Timestamp::from_second(unix_secs) else {
            return false;
        };
        let local = self.zone.to_datetime(at);
        let day = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.open[day]
            .iter()
            .any(|&(from, to)| from <= minute && minute < to)
    }
}

/// `mon`, `mon-fri`, `fri-mon`, `sat,sun` (and combinations) → weekday indexes.
fn parse_days(key: &str) -> Option<Vec<usize>> {
    let index = |d: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d.trim()));
    let mut out = Vec::new();
    for part in key.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                let mut d = a;
                loop {
                    out.push(d);
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => out.push(index(part)?),
        }
    }
    Some(out)
}

/// `09:00-17:00,18:00-20:00` → minute intervals.
fn parse_intervals(s: &str) -> Option<Vec<(u16, u16)>> {
    s.split(',')
        .map(|part| {
            let (a, b) = part.trim().split_once('-')?;
            let (from, to) = (parse_time(a)?, parse_time(b)?);
            (from < to).then_some((from, to))
        })
        .collect()
}

/// `HH:MM`, 00:00 to 24:00.
fn parse_time(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hours(v: Value) -> Hours {
        Hours::parse(&v).unwrap()
    }

    #[test]
    fn open_intervals_are_read_in_the_time_zone() {
        let h = hours(json!({"timezone": "Europe/Berlin", "open": {"mon-fri": "09:00-17:00"}}));
        // 2026-11-23 is a Monday; Berlin is UTC+1 in November.
        let monday_utc = |hh: i8, mm: i8| {
            TimeZone::UTC
                .to_timestamp(jiff::civil::date(2026, 11, 23).at(hh, mm, 0, 0))
                .unwrap()
                .as_second()
        };
        assert_eq!(
            jiff::civil::date(2026, 11, 23).weekday(),
            jiff::civil::Weekday::Monday
        );
        assert!(!h.is_open(monday_utc(7, 59))); // 08:59 in Berlin
        assert!(h.is_open(monday_utc(8, 0))); // 09:00
        assert!(h.is_open(monday_utc(15, 59))); // 16:59
        assert!(!h.is_open(monday_utc(16, 0))); // 17:00: the end is excluded
        assert!(!h.is_open(monday_utc(8, 0) + 5 * 86_400)); // Saturday 09:00
    }

    #[test]
    fn days_wrap_and_lists_and_24_00_work() {
        assert_eq!(parse_days("fri-mon"), Some(vec![4, 5, 6, 0]));
        assert_eq!(parse_days("sat,sun"), Some(vec![5, 6]));
        assert_eq!(parse_days("Mon"), Some(vec![0]));
        assert_eq!(parse_days("mon-xyz"), None);
        assert_eq!(
            parse_intervals("00:00-24:00"),
            Some(vec![(0, 1440)]),
            "a whole day"
        );
        assert_eq!(
            parse_intervals("09:00-12:30, 13:30-18:00"),
            Some(vec![(540, 750), (810, 1080)])
        );
        assert_eq!(parse_intervals("22:00-02:00"), None, "across midnight");
        assert_eq!(parse_intervals("9:00-17:00"), None);
        assert_eq!(parse_intervals("09:00-24:01"), None);
    }

    #[test]
    fn mistakes_name_their_field() {
        let e = Hours::parse(&json!({"timezone": "Mars/Olympus", "open": {"mon": "9-5", "x": "09:00-10:00"}, "y": 1}))
            .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"timezone"), "{e:?}");
        assert!(fields.contains(&"open.mon"), "{e:?}");
        assert!(fields.contains(&"open.x"), "{e:?}");
        assert!(fields.contains(&"y"), "{e:?}");
        assert!(Hours::parse(&json!({"timezone": "UTC"})).is_err());
    }
}
