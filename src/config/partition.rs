//! Partition fields as written in the config: `day(_kafka_timestamp)`, `identity(site)`,
//! `bucket(16, device)`, `truncate(4, name)`, `hour(...)`, `month(...)`, `year(...)`.

use iceberg::spec::Transform;

/// One partition field: a transform of a source column (a top-level column name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionField {
    pub transform: Transform,
    pub column: String,
}

impl PartitionField {
    /// The partition field's name, as Iceberg engines name them (`site`, `ts_day`, `id_bucket`).
    pub fn name(&self) -> String {
        match self.transform {
            Transform::Identity => self.column.clone(),
            Transform::Year => format!("{}_year", self.column),
            Transform::Month => format!("{}_month", self.column),
            Transform::Day => format!("{}_day", self.column),
            Transform::Hour => format!("{}_hour", self.column),
            Transform::Bucket(_) => format!("{}_bucket", self.column),
            Transform::Truncate(_) => format!("{}_trunc", self.column),
            _ => format!("{}_{}", self.column, self.transform),
        }
    }
}

/// Parses `transform(column)` or `transform(n, column)`.
pub fn parse(text: &str) -> Result<PartitionField, String> {
    let s = text.trim();
    let (name, rest) = s.split_once('(').ok_or_else(|| format!("`{s}` is not of the form transform(column)"))?;
    let args = rest.strip_suffix(')').ok_or_else(|| format!("`{s}` lacks its closing parenthesis"))?;
    let args: Vec<&str> = args.split(',').map(str::trim).collect();
    let number = |what: &str| -> Result<u32, String> {
        match args.as_slice() {
            [n, _] => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{s}`: {what} must be a positive number")),
            _ => Err(format!("`{s}`: write {name}(N, column)")),
        }
    };
    let transform = match name.trim() {
        "identity" => Transform::Identity,
        "year" => Transform::Year,
        "month" => Transform::Month,
        "day" => Transform::Day,
        "hour" => Transform::Hour,
        "bucket" => Transform::Bucket(number("the bucket count")?),
        "truncate" => Transform::Truncate(number("the width")?),
        other => {
            return Err(format!(
                "`{other}` is not a partition transform (identity, year, month, day, hour, bucket, truncate)"
            ));
        }
    };
    let column = match (&transform, args.as_slice()) {
        (Transform::Bucket(_) | Transform::Truncate(_), [_, c]) | (_, [c]) => c.to_string(),
        _ => return Err(format!("`{s}`: write {name}(column)")),
    };
    if column.is_empty() {
        return Err(format!("`{s}` names no column"));
    }
    Ok(PartitionField { transform, column })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_fields_parse_or_say_why() {
        let f = parse("day(_kafka_timestamp)").unwrap();
        assert_eq!((f.transform, f.name().as_str()), (Transform::Day, "_kafka_timestamp_day"));
        assert_eq!(
            parse(" identity( site ) ").unwrap(),
            PartitionField { transform: Transform::Identity, column: "site".into() }
        );
        assert_eq!(parse("bucket(16, device)").unwrap().transform, Transform::Bucket(16));
        assert_eq!(parse("truncate(4,name)").unwrap().name(), "name_trunc");
        assert!(parse("weekly(ts)").unwrap_err().contains("not a partition transform"));
        assert!(parse("bucket(device)").unwrap_err().contains("bucket(N, column)"));
        assert!(parse("bucket(0, device)").unwrap_err().contains("positive"));
        assert!(parse("day ts").unwrap_err().contains("transform(column)"));
        assert!(parse("day(a, b)").unwrap_err().contains("day(column)"));
    }
}
