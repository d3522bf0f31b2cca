//! `#[gracerpc::service]`: one trait definition gives a server-side trait to implement, its
//! registration (`<Name>Server`) and a typed client (`<Name>Client`). Use it through the
//! `gracerpc` crate, which re-exports it; the generated code names `::gracerpc` paths.
//!
//! ```ignore
//! #[gracerpc::service]
//! pub trait Calc {
//!     #[idempotent]
//!     fn add(&self, a: i64, b: i64) -> Result<i64, CalcError>;
//!     fn record(&self, entry: Entry) -> Result<(), CalcError>;
//! }
//! ```
//!
//! Wire names are `<trait in snake_case>.<method>` (`calc.add`). Each method must take `&self`
//! and named arguments, and return `Result<T, E>` with serde types. `#[idempotent]` declares
//! the method safe to run more than once: the client flags its requests so, and the server
//! refuses a flagged request to a method without it.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, ReturnType, TraitItem, Type,
};

/// Turns a trait into a typed gracerpc service. See the crate documentation.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One method of the service, as the generated code needs it.
struct Method {
    name: Ident,
    wire: String,
    idempotent: bool,
    args: Vec<(Ident, Type)>,
    ok: Type,
    err: Type,
}

/// `KeyValue` → `key_value`: the wire prefix of a service.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// `Result<T, E>` → `(T, E)`.
fn result_types(ret: &ReturnType) -> Option<(Type, Type)> {
    let ReturnType::Type(_, ty) = ret else {
        return None;
    };
    let Type::Path(p) = ty.as_ref() else {
        return None;
    };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let (ok, err) = (types.next()?, types.next()?);
    types.next().is_none().then_some((ok, err))
}

fn parse_methods(item: &mut ItemTrait, prefix: &str) -> syn::Result<Vec<Method>> {
    let mut methods = Vec::new();
    for it in &mut item.items {
        let TraitItem::Fn(f) = it else {
            return Err(syn::Error::new_spanned(
                it,
                "a gracerpc service trait holds only methods",
            ));
        };
        let before = f.attrs.len();
        f.attrs.retain(|a| !a.path().is_ident("idempotent"));
        let idempotent = f.attrs.len() != before;
        let sig = &f.sig;
        if !sig.generics.params.is_empty() || sig.asyncness.is_some() {
            return Err(syn::Error::new_spanned(
                sig,
                "service methods are not generic and not async",
            ));
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            _ => {
                return Err(syn::Error::new_spanned(
                    sig,
                    "a service method takes `&self` first",
                ));
            }
        }
        let mut args = Vec::new();
        for input in inputs {
            let FnArg::Typed(pt) = input else {
                unreachable!("only the first argument can be a receiver")
            };
            let Pat::Ident(id) = pt.pat.as_ref() else {
                return Err(syn::Error::new_spanned(
                    &pt.pat,
                    "service method arguments are plain names (`a: i64`)",
                ));
            };
            args.push((id.ident.clone(), (*pt.ty).clone()));
        }
        let Some((ok, err)) = result_types(&sig.output) else {
            return Err(syn::Error::new_spanned(
                &sig.output,
                "a service method returns `Result<T, E>` (T and E serde types)",
            ));
        };
        methods.push(Method {
            wire: format!("{prefix}.{}", sig.ident),
            name: sig.ident.clone(),
            idempotent,
            args,
            ok,
            err,
        });
    }
    Ok(methods)
}

/// The expansion, on `proc_macro2` tokens so that it can be tested.
fn expand(attr: Tokens, item: Tokens) -> syn::Result<Tokens> {
    if !attr.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[gracerpc::service] takes no arguments",
        ));
    }
    let mut item: ItemTrait = syn::parse2(item)?;
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a service trait is not generic",
        ));
    }
    let prefix = snake_case(&item.ident.to_string());
    let methods = parse_methods(&mut item, &prefix)?;
    item.supertraits
        .push(syn::parse_quote!(::std::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::std::marker::Sync));
    item.supertraits.push(syn::parse_quote!('static));

    let vis = &item.vis;
    let name = &item.ident;
    let server = format_ident!("{}Server", name);
    let client = format_ident!("{}Client", name);
    let g = quote!(::gracerpc);

    let registrations = methods.iter().map(|m| {
        let (wire, method, idem) = (&m.wire, &m.name, m.idempotent);
        let names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
        let types: Vec<_> = m.args.iter().map(|(_, t)| t).collect();
        quote! {
            let b = {
                // A name no argument can have: arguments shadow closure captures.
                let __gracerpc_service = ::std::sync::Arc::clone(&self.service);
                b.method(
                    #wire,
                    move |req: &#g::server::Request<'_>| {
                        #g::service::serve::<C, (#(#types,)*), _, _>(
                            req,
                            |(#(#names,)*)| __gracerpc_service.#method(#(#names),*),
                        )
                    },
                    #g::server::Placement::Worker,
                    #idem,
                )
            };
        }
    });
    let table = methods.iter().map(|m| {
        let (wire, idem) = (&m.wire, m.idempotent);
        quote!((#wire, #idem))
    });
    let calls = methods.iter().map(|m| {
        let (wire, method, idem, ok, err) = (&m.wire, &m.name, m.idempotent, &m.ok, &m.err);
        let names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
        let types: Vec<_> = m.args.iter().map(|(_, t)| t).collect();
        let doc = format!(
            "Calls `{wire}`{}.",
            if idem {
                " (idempotent: retried after an unknown outcome)"
            } else {
                ""
            }
        );
        quote! {
            #[doc = #doc]
            pub fn #method(&self, #(#names: #types),*)
                -> ::std::result::Result<#ok, #g::service::ServiceError<#err>>
            {
                self.inner.call(#wire, #idem, &(#(&#names,)*))
            }
        }
    });
    let server_doc = format!(
        "The server side of [`{name}`]: register it with `Builder::service`. Methods: {}.",
        methods
            .iter()
            .map(|m| format!("`{}`", m.wire))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let client_doc = format!("A typed client of [`{name}`], over a `gracerpc::client::Client`.");

    Ok(quote! {
        #item

        #[doc = #server_doc]
        #vis struct #server<S, C = #g::service::Postcard> {
            service: ::std::sync::Arc<S>,
            codec: ::std::marker::PhantomData<fn() -> C>,
        }

        impl<S: #name> #server<S> {
            /// Serves `service` with the default codec.
            pub fn new(service: S) -> Self {
                Self::with_codec(service)
            }
        }

        impl<S: #name, C: #g::service::Codec> #server<S, C> {
            /// Every method: its wire name and whether it is declared idempotent.
            pub const METHODS: &'static [(&'static str, bool)] = &[#(#table),*];

            /// Serves `service` with codec `C`.
            pub fn with_codec(service: S) -> Self {
                Self::from_arc(::std::sync::Arc::new(service))
            }

            /// Serves a shared `service`.
            pub fn from_arc(service: ::std::sync::Arc<S>) -> Self {
                #server { service, codec: ::std::marker::PhantomData }
            }
        }

        impl<S: #name, C: #g::service::Codec> #g::service::Register for #server<S, C> {
            fn register(self, b: #g::server::Builder) -> #g::server::Builder {
                #(#registrations)*
                b
            }
        }

        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        #vis struct #client<C = #g::service::Postcard> {
            inner: #g::service::TypedClient<C>,
        }

        impl #client {
            /// A client with the default codec.
            pub fn new(client: #g::client::Client) -> Self {
                Self::with_codec(client)
            }
        }

        impl<C: #g::service::Codec> #client<C> {
            /// A client with codec `C` (the server must use the same).
            pub fn with_codec(client: #g::client::Client) -> Self {
                #client { inner: #g::service::TypedClient::new(client) }
            }

            /// The options of every call (deadline); the idempotent flag always comes from
            /// the method's declaration.
            pub fn with_options(mut self, opts: #g::client::CallOptions) -> Self {
                self.inner = self.inner.with_options(opts);
                self
            }

            #(#calls)*
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_prefix_is_snake_case() {
        assert_eq!(snake_case("Calc"), "calc");
        assert_eq!(snake_case("KeyValue"), "key_value");
        assert_eq!(snake_case("Kv2Store"), "kv2_store");
    }

    fn expanded(src: &str) -> syn::Result<String> {
        expand(Tokens::new(), src.parse().unwrap()).map(|t| t.to_string())
    }

    #[test]
    fn methods_get_wire_names_and_idempotency() {
        let out = expanded(
            "pub trait KeyValue {
                #[idempotent]
                fn get(&self, key: String) -> Result<Option<u64>, Error>;
                fn put(&self, key: String, value: u64) -> Result<(), Error>;
            }",
        )
        .expect("expands");
        assert!(out.contains("\"key_value.get\" , true"), "{out}");
        assert!(out.contains("\"key_value.put\" , false"), "{out}");
        assert!(out.contains("struct KeyValueServer"));
        assert!(out.contains("struct KeyValueClient"));
        // The marker attribute is consumed, not left on the trait for rustc to reject.
        assert!(!out.contains("# [idempotent]"), "{out}");
    }

    #[test]
    fn bad_signatures_are_compile_errors() {
        for (src, want) in [
            (
                "trait A { fn f(self) -> Result<(), ()>; }",
                "takes `&self` first",
            ),
            ("trait A { fn f(&self) -> u32; }", "returns `Result<T, E>`"),
            ("trait A { fn f(&self); }", "returns `Result<T, E>`"),
            (
                "trait A { fn f(&self, (a, b): (u8, u8)) -> Result<(), ()>; }",
                "plain names",
            ),
            (
                "trait A { fn f<T>(&self, t: T) -> Result<(), ()>; }",
                "not generic",
            ),
            ("trait A { const X: u8; }", "only methods"),
            (
                "trait A<T> { fn f(&self) -> Result<(), ()>; }",
                "not generic",
            ),
        ] {
            let err = expanded(src).expect_err(src).to_string();
            assert!(err.contains(want), "{src}: {err}");
        }
        let err = expand(
            quote!(x),
            quote!(
                trait A {}
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no arguments"));
    }
}
