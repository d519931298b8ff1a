use sendfleet_protocol::{Card, CardWidth, Media, MediaHeight, Suggestion};

use super::*;

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn placeholders_are_replaced_with_spaces_allowed_and_own_variables_winning() {
    let own = vars(&[("name", "Asha")]);
    let shared = vars(&[("name", "Shared"), ("order", "A-17")]);
    let v = Variables { own: &own, shared: &shared };
    assert_eq!(render_text("Hi {{name}}, order {{ order }}.", &v).unwrap(), "Hi Asha, order A-17.");
    assert_eq!(render_text("no placeholders", &v).unwrap(), "no placeholders");
    assert_eq!(render_text("unclosed {{name", &v).unwrap(), "unclosed {{name");
}

#[test]
fn a_missing_variable_is_an_error_naming_it_never_an_empty_string() {
    let empty = BTreeMap::new();
    let v = Variables { own: &empty, shared: &empty };
    assert_eq!(render_text("Hi {{first_name}}", &v), Err(RenderError::Missing("first_name".into())));
    assert!(RenderError::Missing("first_name".into()).to_string().contains("'first_name'"));
    assert_eq!(render_text("{{ bad name }}", &v), Err(RenderError::BadName("bad name".into())));
}

#[test]
fn every_string_of_a_carousel_is_rendered_but_type_tags_are_not() {
    let card = |n: &str| Card {
        title: Some(format!("{{{{title}}}} {n}")),
        description: Some("For {{name}}".into()),
        media: Some(Media {
            url: "https://img.example/{{sku}}.png".into(),
            thumbnail_url: None,
            height: MediaHeight::Tall,
        }),
        suggestions: vec![Suggestion::OpenUrl {
            text: "Buy".into(),
            postback_data: "buy-{{sku}}".into(),
            url: "https://shop.example/{{sku}}".into(),
            application: None,
            webview_view_mode: None,
        }],
    };
    let content =
        Content::Carousel { card_width: CardWidth::Medium, cards: vec![card("1"), card("2")], suggestions: vec![] };
    let own = vars(&[("title", "Deal"), ("name", "Ravi"), ("sku", "X9")]);
    let shared = BTreeMap::new();
    let rendered = render_content(&content, &Variables { own: &own, shared: &shared }).unwrap();
    let Content::Carousel { cards, .. } = rendered else { panic!("still a carousel") };
    assert_eq!(cards[1].title.as_deref(), Some("Deal 2"));
    assert_eq!(cards[0].description.as_deref(), Some("For Ravi"));
    assert_eq!(cards[0].media.as_ref().unwrap().url, "https://img.example/X9.png");
    let Suggestion::OpenUrl { url, postback_data, .. } = &cards[0].suggestions[0] else { panic!() };
    assert_eq!((url.as_str(), postback_data.as_str()), ("https://shop.example/X9", "buy-X9"));

    let missing = vars(&[("title", "Deal"), ("name", "Ravi")]);
    let err = render_content(&content, &Variables { own: &missing, shared: &shared }).unwrap_err();
    assert_eq!(err, RenderError::Missing("sku".into()));
}

#[test]
fn provider_template_parameters_are_rendered() {
    let content = Content::Template {
        template_id: "otp_v1".into(),
        parameters: [("code".to_owned(), "{{otp}}".to_owned())].into(),
    };
    let own = vars(&[("otp", "123456")]);
    let shared = BTreeMap::new();
    let rendered = render_content(&content, &Variables { own: &own, shared: &shared }).unwrap();
    assert_eq!(
        rendered,
        Content::Template {
            template_id: "otp_v1".into(),
            parameters: [("code".to_owned(), "123456".to_owned())].into()
        }
    );
}
