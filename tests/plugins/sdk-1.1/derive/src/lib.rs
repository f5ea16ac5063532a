//! `#[derive(PluginConfig)]`: a plugin's configuration keys, declared once on the struct serde
//! reads them into. Used through `portcullis_plugin_api::PluginConfig`; see the documentation
//! there for the attributes.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::{
    parse_macro_input, spanned::Spanned, Attribute, Data, DeriveInput, Expr, ExprLit, Fields,
    GenericArgument, Lit, LitStr, Meta, PathArguments, Type,
};

/// Implements `portcullis_plugin_api::PluginConfig` for a struct with named fields.
///
/// Each field is one key of the instance's `config:` mapping. Its `///` comment is the key's
/// description (required: a key nobody can look up is a key nobody can set). A key is required
/// unless its type is `Option<…>` or it has `#[serde(default)]` (on the field or the struct).
/// `#[serde(rename = "…")]` names the key. `#[config(…)]` adds:
///
/// * `secret` — the value is never shown (`plugin inspect`, errors, the status API);
/// * `env = "NAME"` — when the key is absent, the value of the server's environment variable
///   `NAME` is used: as a string, or split on commas for a `Vec<String>` (or with `split`, for a
///   type that reads a list);
/// * `env_unless = "a b"` — … but not when one of the keys `a`, `b` is set (a fallback meant for
///   an instance that has none of its alternatives);
/// * `url` — the value (a string, or a list of strings) is a URL the plugin will call: a `check`
///   or a reload refuses plain `http://` unless the instance sets `dangerous: { allow_http: true }`;
/// * `example = "…"` — a value for the example configuration (`plugin inspect`, `plugin test`);
///   written as-is for string keys, as JSON for the others. Every required key needs one.
#[proc_macro_derive(PluginConfig, attributes(config))]
pub fn derive_plugin_config(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.span(),
            "PluginConfig: a plugin config is a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            input.span(),
            "PluginConfig: a plugin config is a struct with named fields",
        ));
    };
    let container = serde_attrs(&input.attrs)?;
    if container.flatten {
        return Err(syn::Error::new(
            input.span(),
            "PluginConfig: unexpected flatten",
        ));
    }
    if let Some(span) = container.rename_all {
        return Err(syn::Error::new(
            span,
            "PluginConfig: `rename_all` is not supported; rename keys one by one with \
             #[serde(rename = \"…\")]",
        ));
    }

    let mut keys = Vec::new();
    for field in &fields.named {
        let serde = serde_attrs(&field.attrs)?;
        if serde.skip {
            continue;
        }
        if serde.flatten {
            return Err(syn::Error::new(
                field.span(),
                "PluginConfig: #[serde(flatten)] is not supported; list the keys in the struct",
            ));
        }
        let ident = field
            .ident
            .as_ref()
            .ok_or_else(|| syn::Error::new(field.span(), "PluginConfig: unnamed field"))?;
        let name = serde
            .rename
            .unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_string());
        let description = doc_text(&field.attrs).ok_or_else(|| {
            syn::Error::new(
                field.span(),
                format!("PluginConfig: document key `{name}` with a /// comment (its description)"),
            )
        })?;
        let opts = config_attrs(&field.attrs)?;
        let optional = option_inner(&field.ty).is_some();
        let required = !optional && !serde.default && !container.default;
        let text = is_string(&field.ty);

        let mut key = quote! {
            ::portcullis_plugin_api::ConfigKey::new(#name, #description)
        };
        if required {
            key = quote! { #key.required() };
        }
        if opts.secret {
            key = quote! { #key.secret() };
        }
        if let Some(env) = &opts.env {
            if opts.split || is_string_list(&field.ty) {
                key = quote! { #key.env_split(#env) };
            } else {
                // Given to the field as a string: its type must read one.
                key = quote! { #key.env(#env) };
            }
            let unless = &opts.env_unless;
            if !unless.is_empty() {
                key = quote! { #key.env_unless(&[#(#unless),*]) };
            }
        } else if !opts.env_unless.is_empty() {
            return Err(syn::Error::new(
                field.span(),
                "PluginConfig: `env_unless` goes with `env = \"NAME\"`",
            ));
        }
        if opts.url {
            key = quote! { #key.url() };
        }
        match &opts.example {
            Some(example) if text => key = quote! { #key.example_text(#example) },
            Some(example) => key = quote! { #key.example_json(#example) },
            None if required => {
                return Err(syn::Error::new(
                    field.span(),
                    format!(
                        "PluginConfig: required key `{name}` needs #[config(example = \"…\")] \
                         (used by `plugin inspect` and `plugin test`)"
                    ),
                ))
            }
            None => {}
        }
        keys.push(key);
    }

    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::portcullis_plugin_api::PluginConfig for #ty #ty_generics #where_clause {
            const KEYS: &'static [::portcullis_plugin_api::ConfigKey] = &[#(#keys),*];
        }
    })
}

#[derive(Default)]
struct SerdeAttrs {
    rename: Option<String>,
    rename_all: Option<Span>,
    default: bool,
    skip: bool,
    flatten: bool,
}

/// The few `#[serde(…)]` settings that change which keys exist and whether they are required.
fn serde_attrs(attrs: &[Attribute]) -> syn::Result<SerdeAttrs> {
    let mut out = SerdeAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let p = &meta.path;
            if p.is_ident("rename") {
                // `rename = "x"` or `rename(deserialize = "x", …)`.
                if meta.input.peek(syn::Token![=]) {
                    let lit: LitStr = meta.value()?.parse()?;
                    out.rename = Some(lit.value());
                } else {
                    meta.parse_nested_meta(|inner| {
                        let lit: LitStr = inner.value()?.parse()?;
                        if inner.path.is_ident("deserialize") {
                            out.rename = Some(lit.value());
                        }
                        Ok(())
                    })?;
                }
            } else if p.is_ident("rename_all") {
                out.rename_all = Some(p.span());
                skip_value(&meta)?;
            } else if p.is_ident("default") {
                out.default = true;
                skip_value(&meta)?;
            } else if p.is_ident("skip") || p.is_ident("skip_deserializing") {
                out.skip = true;
            } else if p.is_ident("flatten") {
                out.flatten = true;
            } else {
                skip_value(&meta)?;
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Consumes whatever follows a serde setting this macro does not read (`= "…"` or `(…)`).
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

#[derive(Default)]
struct ConfigAttrs {
    secret: bool,
    url: bool,
    split: bool,
    env: Option<LitStr>,
    env_unless: Vec<String>,
    example: Option<LitStr>,
}

fn config_attrs(attrs: &[Attribute]) -> syn::Result<ConfigAttrs> {
    let mut out = ConfigAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("config")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("secret") {
                out.secret = true;
            } else if meta.path.is_ident("url") {
                out.url = true;
            } else if meta.path.is_ident("split") {
                out.split = true;
            } else if meta.path.is_ident("env") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty()
                    || !lit
                        .value()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(syn::Error::new(
                        lit.span(),
                        "PluginConfig: an environment variable name is [A-Za-z0-9_]+",
                    ));
                }
                out.env = Some(lit);
            } else if meta.path.is_ident("env_unless") {
                let lit: LitStr = meta.value()?.parse()?;
                out.env_unless = lit
                    .value()
                    .split([' ', ','])
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect();
            } else if meta.path.is_ident("example") {
                out.example = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error(
                    "PluginConfig: expected `secret`, `url`, `env = \"NAME\"`, `split`, `env_unless = \"KEYS\"` or `example = \"…\"`",
                ));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// The `///` lines of a field, joined into one line.
fn doc_text(attrs: &[Attribute]) -> Option<String> {
    let mut lines = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
            {
                let line = s.value();
                let line = line.trim();
                if line.is_empty() {
                    // A blank line ends the first paragraph: the rest is for rustdoc.
                    if !lines.is_empty() {
                        break;
                    }
                    continue;
                }
                lines.push(line.to_string());
            }
        }
    }
    let text = lines.join(" ");
    (!text.is_empty()).then_some(text)
}

/// `T` of an `Option<T>`.
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// `Vec<String>` or `Option<Vec<String>>`.
fn is_string_list(ty: &Type) -> bool {
    let ty = option_inner(ty).unwrap_or(ty);
    let Type::Path(p) = ty else { return false };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    last.ident == "Vec"
        && matches!(args.args.first(), Some(GenericArgument::Type(t)) if is_string(t))
}

/// `String` or `Option<String>`.
fn is_string(ty: &Type) -> bool {
    let ty = option_inner(ty).unwrap_or(ty);
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "String" && s.arguments.is_empty()))
}
