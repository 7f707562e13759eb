//! A table's schema given by the operator, instead of inferred from its first records: a list of
//! `name type` pairs (`columns`), or an Iceberg schema in JSON (`schema_file`).
//!
//! Types are Iceberg's, spelled as in its JSON (`boolean`, `int`, `long`, `float`, `double`,
//! `decimal(9, 2)`, `date`, `time`, `timestamp`, `timestamptz`, `string`, `uuid`, `fixed[16]`,
//! `binary`), and nested: `struct<name: type, ...>`, `list<type>`, `map<type, type>`. Every
//! column of the list is optional (a record may lack it); a schema file says for itself.

use std::path::Path;

use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type};

/// The schema of `columns` (each `name type`), fields numbered from 1, parents first.
pub fn parse_columns(columns: &[String]) -> Result<Schema, String> {
    let mut ids = 0;
    let mut fields = Vec::with_capacity(columns.len());
    for text in columns {
        let mut p = Parser { text, pos: 0, ids: &mut ids };
        let field = p.field().and_then(|f| p.end().map(|()| f)).map_err(|e| format!("`{text}`: {e}"))?;
        fields.push(field);
    }
    // Ids were handed out as parsed, so they are unique; building checks names too.
    Schema::builder().with_schema_id(0).with_fields(fields).build().map_err(|e| e.to_string())
}

/// The schema in an Iceberg schema JSON file (with or without its `schema-id`).
pub fn read_schema_file(path: &Path) -> Result<Schema, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Ok(schema) = serde_json::from_str::<Schema>(&text) {
        return Ok(schema);
    }
    let strukt = serde_json::from_str::<StructType>(&text)
        .map_err(|e| format!("{} is not an Iceberg schema in JSON: {e}", path.display()))?;
    Schema::builder().with_fields(strukt.fields().to_vec()).build().map_err(|e| format!("{}: {e}", path.display()))
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    ids: &'a mut i32,
}

impl Parser<'_> {
    fn id(&mut self) -> i32 {
        *self.ids += 1;
        *self.ids
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("expected `{c}` at `{}`", self.rest())) }
    }

    fn end(&mut self) -> Result<(), String> {
        self.skip_space();
        if self.rest().is_empty() { Ok(()) } else { Err(format!("unexpected `{}` after the type", self.rest())) }
    }

    /// A name: up to whitespace, `:`, `,` or `<>`.
    fn name(&mut self) -> Result<String, String> {
        self.skip_space();
        let len = self.rest().find(|c: char| c.is_whitespace() || ":,<>".contains(c)).unwrap_or(self.rest().len());
        if len == 0 {
            return Err(format!("expected a name at `{}`", self.rest()));
        }
        let name = self.rest()[..len].to_string();
        self.pos += len;
        Ok(name)
    }

    /// `name type` or `name: type`, optional.
    fn field(&mut self) -> Result<NestedFieldRef, String> {
        let name = self.name()?;
        self.eat(':');
        let id = self.id();
        let ty = self.ty()?;
        Ok(NestedField::optional(id, name, ty).into())
    }

    fn ty(&mut self) -> Result<Type, String> {
        self.skip_space();
        let word_len = self.rest().find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(self.rest().len());
        let word = self.rest()[..word_len].to_ascii_lowercase();
        self.pos += word_len;
        match word.as_str() {
            "struct" => {
                self.expect('<')?;
                let mut fields = vec![self.field()?];
                while self.eat(',') {
                    fields.push(self.field()?);
                }
                self.expect('>')?;
                Ok(Type::Struct(StructType::new(fields)))
            }
            "list" | "array" => {
                self.expect('<')?;
                let id = self.id();
                let element = self.ty()?;
                self.expect('>')?;
                Ok(Type::List(ListType::new(NestedField::list_element(id, element, false).into())))
            }
            "map" => {
                self.expect('<')?;
                let (key_id, value_id) = (self.id(), self.id());
                let key = self.ty()?;
                self.expect(',')?;
                let value = self.ty()?;
                self.expect('>')?;
                Ok(Type::Map(MapType::new(
                    NestedField::map_key_element(key_id, key).into(),
                    NestedField::map_value_element(value_id, value, false).into(),
                )))
            }
            "" => Err(format!("expected a type at `{}`", self.rest())),
            _ => self.primitive(word),
        }
    }

    /// Iceberg's JSON spelling, with `decimal(p, s)` and `fixed[n]` taking their arguments.
    fn primitive(&mut self, word: String) -> Result<Type, String> {
        let mut spelled = word;
        self.skip_space();
        for (open, close) in [('(', ')'), ('[', ']')] {
            if self.rest().starts_with(open) {
                let end = self.rest().find(close).ok_or_else(|| format!("`{open}` without `{close}`"))?;
                spelled.push_str(&self.rest()[..=end].replace(' ', ""));
                self.pos += end + 1;
            }
        }
        let spelled = match spelled.as_str() {
            "integer" => "int".to_string(),
            "bigint" => "long".to_string(),
            "bool" => "boolean".to_string(),
            _ => spelled,
        };
        serde_json::from_value::<PrimitiveType>(serde_json::Value::String(spelled.clone()))
            .map(Type::Primitive)
            .map_err(|_| format!("`{spelled}` is not an Iceberg type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(list: &[&str]) -> Result<Schema, String> {
        parse_columns(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn pairs_become_optional_fields_of_iceberg_types() {
        let s = cols(&[
            "device string",
            "temp double",
            "at timestamptz",
            "price decimal(9, 2)",
            "pos struct<lat: double, lon double>",
            "tags list<string>",
            "attrs map<string, long>",
            "readings list<struct<k: string, v: double>>",
        ])
        .unwrap();
        let f = |n: &str| s.as_struct().field_by_name(n).unwrap().clone();
        assert_eq!(*f("temp").field_type, Type::Primitive(PrimitiveType::Double));
        assert_eq!(*f("at").field_type, Type::Primitive(PrimitiveType::Timestamptz));
        assert_eq!(*f("price").field_type, Type::Primitive(PrimitiveType::Decimal { precision: 9, scale: 2 }));
        assert!(matches!(f("pos").field_type.as_ref(), Type::Struct(st) if st.fields().len() == 2));
        assert!(matches!(f("tags").field_type.as_ref(), Type::List(_)));
        assert!(matches!(f("attrs").field_type.as_ref(), Type::Map(_)));
        assert!(s.as_struct().fields().iter().all(|f| !f.required));
        assert_eq!(s.field_by_name("pos.lon").map(|f| f.field_type.to_string()), Some("double".to_string()));
    }

    #[test]
    fn mistakes_name_the_column_and_the_place() {
        let e = cols(&["temp dubble"]).unwrap_err();
        assert!(e.contains("`temp dubble`") && e.contains("`dubble` is not an Iceberg type"), "{e}");
        let e = cols(&["pos struct<lat: double"]).unwrap_err();
        assert!(e.contains("expected `>`"), "{e}");
        assert!(cols(&["temp"]).unwrap_err().contains("expected a type"));
        assert!(cols(&["temp double extra"]).unwrap_err().contains("unexpected `extra`"));
        assert!(cols(&["a long", "a string"]).is_err(), "two columns of one name");
    }

    #[test]
    fn a_schema_file_is_read_with_or_without_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with.json");
        std::fs::write(
            &with,
            r#"{"type":"struct","schema-id":3,"fields":[{"id":1,"name":"n","required":true,"type":"long"}]}"#,
        )
        .unwrap();
        let s = read_schema_file(&with).unwrap();
        assert!(s.field_by_name("n").unwrap().required);
        let without = dir.path().join("without.json");
        std::fs::write(
            &without,
            r#"{"type":"struct","fields":[{"id":1,"name":"n","required":false,"type":"string"}]}"#,
        )
        .unwrap();
        assert_eq!(read_schema_file(&without).unwrap().as_struct().fields().len(), 1);
        std::fs::write(&without, "{").unwrap();
        assert!(read_schema_file(&without).unwrap_err().contains("is not an Iceberg schema"));
    }
}
