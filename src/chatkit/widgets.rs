//! Typed ChatKit widgets: the components of `openai-chatkit` 1.6.5's `chatkit/widgets.py`
//! and `chatkit/actions.py` (the wire contract) that a task app needs, serialised exactly as
//! that SDK spells them: the discriminator `type` is the component's name, props are
//! camelCase, and unset optionals are omitted (the SDK drops `None`s from widgets).
//!
//! Only a subset of each component's props is modelled; everything here is checked against
//! the SDK's models by `tests/conformance/check_widgets.py` (see `task_widget`'s tests).
//! The SDK's models ignore unknown keys (its dynamic components even accept them), so the
//! compiler is what keeps keys the SDK does not define off the wire.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// An enum of string literals, as the SDK's `Literal[...]` sets spell them; `ALL` lists
/// every value so tests can show the SDK accepts each one.
macro_rules! literals {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $lit:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $(#[serde(rename = $lit)] $variant),+
        }

        impl $name {
            /// Every value, in the SDK's order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The literal on the wire.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $lit),+
                }
            }
        }
    };
}

literals!(
    /// Cross-axis alignment (`Alignment`).
    Alignment {
        Start = "start",
        Center = "center",
        End = "end",
        Baseline = "baseline",
        Stretch = "stretch",
    }
);

literals!(
    /// Main-axis distribution (`Justification`).
    Justification {
        Start = "start",
        Center = "center",
        End = "end",
        Between = "between",
        Around = "around",
        Evenly = "evenly",
        Stretch = "stretch",
    }
);

literals!(
    /// Flex wrapping of a container's children.
    Wrap {
        NoWrap = "nowrap",
        Wrap = "wrap",
        WrapReverse = "wrap-reverse",
    }
);

literals!(
    /// Direction of a `Box`.
    Direction {
        Row = "row",
        Col = "col",
    }
);

literals!(
    /// Corner radius tokens (`RadiusValue`).
    Radius {
        TwoXs = "2xs",
        Xs = "xs",
        Sm = "sm",
        Md = "md",
        Lg = "lg",
        Xl = "xl",
        TwoXl = "2xl",
        ThreeXl = "3xl",
        FourXl = "4xl",
        Full = "full",
        Percent100 = "100%",
        None = "none",
    }
);

literals!(
    /// Horizontal text alignment (`TextAlign`).
    TextAlign {
        Start = "start",
        Center = "center",
        End = "end",
    }
);

literals!(
    /// Body text sizes (`TextSize`).
    TextSize {
        Xs = "xs",
        Sm = "sm",
        Md = "md",
        Lg = "lg",
        Xl = "xl",
    }
);

literals!(
    /// Title sizes (`TitleSize`).
    TitleSize {
        Sm = "sm",
        Md = "md",
        Lg = "lg",
        Xl = "xl",
        TwoXl = "2xl",
        ThreeXl = "3xl",
        FourXl = "4xl",
        FiveXl = "5xl",
    }
);

literals!(
    /// Caption sizes (`CaptionSize`).
    CaptionSize {
        Sm = "sm",
        Md = "md",
        Lg = "lg",
    }
);

literals!(
    /// Icon sizes (`IconSize`).
    IconSize {
        Xs = "xs",
        Sm = "sm",
        Md = "md",
        Lg = "lg",
        Xl = "xl",
        TwoXl = "2xl",
        ThreeXl = "3xl",
    }
);

literals!(
    /// Font weights of `Text`, `Title` and `Caption`.
    FontWeight {
        Normal = "normal",
        Medium = "medium",
        Semibold = "semibold",
        Bold = "bold",
    }
);

literals!(
    /// The text colour tokens the SDK documents (its field takes any colour string).
    TextColor {
        Prose = "prose",
        Primary = "primary",
        Emphasis = "emphasis",
        Secondary = "secondary",
        Tertiary = "tertiary",
        Success = "success",
        Warning = "warning",
        Danger = "danger",
    }
);

literals!(
    /// `Badge.color`.
    BadgeColor {
        Secondary = "secondary",
        Success = "success",
        Danger = "danger",
        Warning = "warning",
        Info = "info",
        Discovery = "discovery",
    }
);

literals!(
    /// `Badge.variant`.
    BadgeVariant {
        Solid = "solid",
        Soft = "soft",
        Outline = "outline",
    }
);

literals!(
    /// `Badge.size`.
    BadgeSize {
        Sm = "sm",
        Md = "md",
        Lg = "lg",
    }
);

literals!(
    /// `Button.style`.
    ButtonStyle {
        Primary = "primary",
        Secondary = "secondary",
    }
);

literals!(
    /// `Button.color`.
    ButtonColor {
        Primary = "primary",
        Secondary = "secondary",
        Info = "info",
        Discovery = "discovery",
        Success = "success",
        Caution = "caution",
        Warning = "warning",
        Danger = "danger",
    }
);

literals!(
    /// `Button.iconSize`.
    ButtonIconSize {
        Sm = "sm",
        Md = "md",
        Lg = "lg",
        Xl = "xl",
        TwoXl = "2xl",
    }
);

literals!(
    /// Button and input variants (`ControlVariant`).
    ControlVariant {
        Solid = "solid",
        Soft = "soft",
        Outline = "outline",
        Ghost = "ghost",
    }
);

literals!(
    /// Button and input sizes (`ControlSize`).
    ControlSize {
        ThreeXs = "3xs",
        TwoXs = "2xs",
        Xs = "xs",
        Sm = "sm",
        Md = "md",
        Lg = "lg",
        Xl = "xl",
        TwoXl = "2xl",
        ThreeXl = "3xl",
    }
);

literals!(
    /// `Card.size`.
    CardSize {
        Sm = "sm",
        Md = "md",
        Lg = "lg",
        Full = "full",
    }
);

literals!(
    /// A forced light or dark theme for a subtree.
    Theme {
        Light = "light",
        Dark = "dark",
    }
);

literals!(
    /// Who handles an action: the server (`threads.custom_action`) or the host page.
    Handler {
        Client = "client",
        Server = "server",
    }
);

literals!(
    /// What shows as busy while an action runs: the control itself (`self`), the whole
    /// widget (`container`), nothing, or the client's choice (`auto`).
    LoadingBehavior {
        Auto = "auto",
        None = "none",
        SelfOnly = "self",
        Container = "container",
    }
);

literals!(
    /// The built-in icon names (`chatkit/icons.py` `IconName`). `Clock` is in the Python
    /// SDK but missing from `@openai/chatkit`'s `WidgetIcon` type: prefer another.
    IconName {
        Agent = "agent",
        Analytics = "analytics",
        Atom = "atom",
        Batch = "batch",
        Bolt = "bolt",
        BookOpen = "book-open",
        BookClosed = "book-closed",
        BookClock = "book-clock",
        Bug = "bug",
        Calendar = "calendar",
        Chart = "chart",
        Check = "check",
        CheckCircle = "check-circle",
        CheckCircleFilled = "check-circle-filled",
        ChevronLeft = "chevron-left",
        ChevronRight = "chevron-right",
        CircleQuestion = "circle-question",
        Clock = "clock",
        Compass = "compass",
        Confetti = "confetti",
        Cube = "cube",
        Desktop = "desktop",
        Document = "document",
        Dot = "dot",
        DotsHorizontal = "dots-horizontal",
        DotsVertical = "dots-vertical",
        EmptyCircle = "empty-circle",
        ExternalLink = "external-link",
        Globe = "globe",
        Keys = "keys",
        Lab = "lab",
        Images = "images",
        Info = "info",
        Lifesaver = "lifesaver",
        Lightbulb = "lightbulb",
        Mail = "mail",
        MapPin = "map-pin",
        Maps = "maps",
        Mobile = "mobile",
        Name = "name",
        Notebook = "notebook",
        NotebookPencil = "notebook-pencil",
        PageBlank = "page-blank",
        Phone = "phone",
        Play = "play",
        Plus = "plus",
        Profile = "profile",
        ProfileCard = "profile-card",
        Reload = "reload",
        Star = "star",
        StarFilled = "star-filled",
        Search = "search",
        Sparkle = "sparkle",
        SparkleDouble = "sparkle-double",
        SquareCode = "square-code",
        SquareImage = "square-image",
        SquareText = "square-text",
        Suitcase = "suitcase",
        SettingsSlider = "settings-slider",
        User = "user",
        Wreath = "wreath",
        Write = "write",
        WriteAlt = "write-alt",
        WriteAlt2 = "write-alt2",
    }
);

/// A length: an integer (pixels, or spacing units for gaps and padding) or a CSS string.
/// Integers only, because several SDK fields are `int | str` and strict validation
/// refuses `1.0` there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Length {
    Int(i64),
    Css(String),
}

impl From<i64> for Length {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<&str> for Length {
    fn from(css: &str) -> Self {
        Self::Css(css.to_owned())
    }
}

/// Per-side spacing (the SDK's `Spacing`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Spacing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bottom: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<Length>,
}

/// Padding or margin: one length for every side, or per side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Inset {
    All(Length),
    Sides(Spacing),
}

impl From<i64> for Inset {
    fn from(n: i64) -> Self {
        Self::All(Length::Int(n))
    }
}

/// A colour for each theme (the SDK's `ThemeColor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThemeColor {
    pub light: String,
    pub dark: String,
}

/// A colour: a documented text token, any other token or CSS colour, or one per theme.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Color {
    Text(TextColor),
    Css(String),
    Theme(ThemeColor),
}

impl From<TextColor> for Color {
    fn from(token: TextColor) -> Self {
        Self::Text(token)
    }
}

/// The status line above a `Card` or `ListView`: text with an icon or with a favicon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WidgetStatus {
    Icon {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        icon: Option<IconName>,
    },
    Favicon {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        favicon: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        frame: Option<bool>,
    },
}

/// What a control does when used (`chatkit/actions.py` `ActionConfig`).
///
/// `handler`, `loadingBehavior` and `streaming` have non-null defaults in the SDK, so its
/// server always sends them; they are always sent here too, the widget having only ever
/// seen them present. `payload` (`Any`, default `None`) is omitted when unset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActionConfig {
    /// The action's name, e.g. `task.complete`; the server dispatches on it.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Map<String, Value>>,
    pub handler: Handler,
    #[serde(rename = "loadingBehavior")]
    pub loading_behavior: LoadingBehavior,
    /// `false` sends the action as `threads.sync_custom_action` (a JSON answer instead
    /// of a stream).
    pub streaming: bool,
}

impl ActionConfig {
    /// A server-handled, streamed action without payload (the SDK's defaults).
    #[must_use]
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            payload: None,
            handler: Handler::Server,
            loading_behavior: LoadingBehavior::Auto,
            streaming: true,
        }
    }

    /// This action carrying `payload`, which must serialise to a JSON object (the
    /// client's `ActionConfig.payload` is a record).
    pub fn with_payload<P: Serialize + ?Sized>(
        mut self,
        payload: &P,
    ) -> Result<Self, serde_json::Error> {
        match serde_json::to_value(payload)? {
            Value::Object(map) => {
                self.payload = Some(map);
                Ok(self)
            }
            _ => Err(<serde_json::Error as serde::ser::Error>::custom(
                "an action payload must serialise to a JSON object",
            )),
        }
    }

    /// This action with `behavior` while it runs.
    #[must_use]
    pub fn loading(mut self, behavior: LoadingBehavior) -> Self {
        self.loading_behavior = behavior;
        self
    }
}

/// A confirm or cancel button in a card's footer (`CardAction`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CardAction {
    pub label: String,
    pub action: ActionConfig,
}

// ---- roots ----------------------------------------------------------------------------

/// A widget tree's root, as a `widget` thread item carries it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum WidgetRoot {
    /// Boxed: a card's many optional props would make every root as large as one.
    Card(Box<Card>),
    ListView(ListView),
}

/// A bordered container for any components.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_form: Option<bool>,
    pub children: Vec<WidgetComponent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<Color>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<CardSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding: Option<Inset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<WidgetStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapsed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm: Option<CardAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CardAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme: Option<Theme>,
}

/// How many items a `ListView` shows before its "Show more" control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListLimit {
    Count(u32),
    Auto,
}

impl Serialize for ListLimit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => serializer.serialize_u32(*n),
            Self::Auto => serializer.serialize_str("auto"),
        }
    }
}

/// A list of rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ListView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub children: Vec<ListViewItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<ListLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<WidgetStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme: Option<Theme>,
}

/// One row of a `ListView` (valid only there).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub struct ListViewItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub children: Vec<WidgetComponent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_click_action: Option<ActionConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub align: Option<Alignment>,
}

// ---- components -----------------------------------------------------------------------

/// Any component that can sit inside a root or a container.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum WidgetComponent {
    Row(Row),
    Col(Col),
    Box(BoxLayout),
    Text(Text),
    Title(Title),
    Caption(Caption),
    Markdown(Markdown),
    Badge(Badge),
    Button(Button),
    Checkbox(Checkbox),
    Divider(Divider),
    Spacer(Spacer),
    Icon(Icon),
}

/// The flex container props shared by `Row`, `Col` and `Box` (the SDK's `BoxBase`, less
/// `border` and `aspectRatio`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always sent, empty or not: the SDK's own serialiser keeps `children` even when
    /// unset (as `null`, which is best avoided).
    pub children: Vec<WidgetComponent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub align: Option<Alignment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justify: Option<Justification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrap: Option<Wrap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flex: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_height: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_width: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_height: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_width: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding: Option<Inset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<Inset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius: Option<Radius>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<Color>,
}

/// A horizontal flex container.
pub type Row = Container;

/// A vertical flex container.
pub type Col = Container;

/// A flex container with a chosen direction (`Box`; named so as not to shadow `Box<T>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BoxLayout {
    #[serde(flatten)]
    pub container: Container,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
}

/// Plain text.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Text {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub italic: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_through: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<FontWeight>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<TextSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_align: Option<TextAlign>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lines: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<u32>,
}

/// A headline.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Title {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<FontWeight>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<TitleSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_align: Option<TextAlign>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<u32>,
}

/// Small supporting text.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Caption {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<FontWeight>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<CaptionSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_align: Option<TextAlign>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<u32>,
}

/// Markdown text.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Markdown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
}

/// A small status or category label.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Badge {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<BadgeColor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<BadgeVariant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<BadgeSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pill: Option<bool>,
}

/// A button, usually with an action.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Button {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_click_action: Option<ActionConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_start: Option<IconName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_end: Option<IconName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<ButtonStyle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_size: Option<ButtonIconSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<ButtonColor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<ControlVariant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<ControlSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pill: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uniform: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A checkbox; `name` is its form field name (required by the SDK even outside forms).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkbox {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_checked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_change_action: Option<ActionConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// A separating line.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Divider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A border token (`default`, `subtle`, `strong`), primitive or CSS colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spacing: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush: Option<bool>,
}

/// Flexible space pushing its neighbours apart.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spacer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Length>,
}

/// A built-in icon.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Icon {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: IconName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<IconSize>,
}

impl Text {
    /// Text showing `value`, every other prop unset.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }
}

impl Title {
    /// A title showing `value`, every other prop unset.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }
}

impl Caption {
    /// A caption showing `value`, every other prop unset.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }
}

impl Markdown {
    /// Markdown rendering `value`.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }
}

impl Badge {
    /// A badge reading `label`, every other prop unset.
    #[must_use]
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            ..Self::default()
        }
    }
}

impl Checkbox {
    /// A checkbox named `name`, every other prop unset.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

impl Icon {
    /// The icon `name` in the default colour and size.
    #[must_use]
    pub fn new(name: IconName) -> Self {
        Self {
            key: None,
            id: None,
            name,
            color: None,
            size: None,
        }
    }
}

impl Container {
    /// A container of `children`, every other prop unset.
    #[must_use]
    pub fn of(children: Vec<WidgetComponent>) -> Self {
        Self {
            children,
            ..Self::default()
        }
    }
}

impl Card {
    /// A card of `children`, every other prop unset.
    #[must_use]
    pub fn of(children: Vec<WidgetComponent>) -> Self {
        Self {
            children,
            ..Self::default()
        }
    }
}

macro_rules! into_component {
    ($($ty:ty => $variant:ident),+ $(,)?) => {
        $(impl From<$ty> for WidgetComponent {
            fn from(c: $ty) -> Self {
                Self::$variant(c)
            }
        })+
    };
}

into_component!(
    BoxLayout => Box,
    Text => Text,
    Title => Title,
    Caption => Caption,
    Markdown => Markdown,
    Badge => Badge,
    Button => Button,
    Checkbox => Checkbox,
    Divider => Divider,
    Spacer => Spacer,
    Icon => Icon,
);

impl WidgetComponent {
    /// A `Row` (the container type alone cannot say whether it is a row or a column).
    #[must_use]
    pub fn row(container: Container) -> Self {
        Self::Row(container)
    }

    /// A `Col`.
    #[must_use]
    pub fn col(container: Container) -> Self {
        Self::Col(container)
    }
}

impl From<Card> for WidgetRoot {
    fn from(card: Card) -> Self {
        Self::Card(Box::new(card))
    }
}

impl From<ListView> for WidgetRoot {
    fn from(list: ListView) -> Self {
        Self::ListView(list)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{json, to_value};

    use super::*;

    fn component(c: impl Into<WidgetComponent>) -> Value {
        to_value(c.into()).unwrap()
    }

    /// Widgets using every component, every modelled prop and every literal of every enum
    /// at least once, for the SDK check (`task_widget`'s tests write them out).
    pub(crate) fn catalogue() -> Vec<(&'static str, WidgetRoot)> {
        let action = ActionConfig::new("sample.action")
            .with_payload(&json!({"n": 1, "nested": {"list": [1, "two"]}}))
            .unwrap();
        let mut texts: Vec<WidgetComponent> = Vec::new();
        for (i, size) in TextSize::ALL.iter().enumerate() {
            texts.push(
                Text {
                    key: Some(format!("text-{i}")),
                    id: Some(format!("text_{i}")),
                    streaming: Some(false),
                    italic: Some(true),
                    line_through: Some(true),
                    color: Some(Color::Text(TextColor::ALL[i % TextColor::ALL.len()])),
                    weight: Some(FontWeight::ALL[i % FontWeight::ALL.len()]),
                    width: Some(Length::Int(120)),
                    size: Some(*size),
                    text_align: Some(TextAlign::ALL[i % TextAlign::ALL.len()]),
                    truncate: Some(false),
                    min_lines: Some(1),
                    max_lines: Some(3),
                    ..Text::new("text")
                }
                .into(),
            );
        }
        for color in TextColor::ALL {
            texts.push(
                Text {
                    color: Some(Color::Text(*color)),
                    ..Text::new(color.as_str())
                }
                .into(),
            );
        }
        for weight in FontWeight::ALL {
            texts.push(
                Caption {
                    weight: Some(*weight),
                    ..Caption::new(weight.as_str())
                }
                .into(),
            );
        }
        for align in TextAlign::ALL {
            texts.push(
                Title {
                    text_align: Some(*align),
                    ..Title::new(align.as_str())
                }
                .into(),
            );
        }
        for size in TitleSize::ALL {
            texts.push(
                Title {
                    key: Some(format!("title-{}", size.as_str())),
                    id: Some("t".into()),
                    color: Some(Color::Css("#123456".into())),
                    weight: Some(FontWeight::Bold),
                    size: Some(*size),
                    truncate: Some(true),
                    max_lines: Some(1),
                    ..Title::new("title")
                }
                .into(),
            );
        }
        for size in CaptionSize::ALL {
            texts.push(
                Caption {
                    key: Some("c".into()),
                    id: Some("c".into()),
                    color: Some(Color::Theme(ThemeColor {
                        light: "gray-700".into(),
                        dark: "gray-200".into(),
                    })),
                    size: Some(*size),
                    text_align: Some(TextAlign::End),
                    truncate: Some(true),
                    max_lines: Some(2),
                    ..Caption::new("caption")
                }
                .into(),
            );
        }
        texts.push(
            Markdown {
                key: Some("md".into()),
                id: Some("md".into()),
                streaming: Some(true),
                ..Markdown::new("**bold** _it_\n\n- a\n- b")
            }
            .into(),
        );

        let mut badges: Vec<WidgetComponent> = Vec::new();
        for (i, color) in BadgeColor::ALL.iter().enumerate() {
            badges.push(
                Badge {
                    key: Some(format!("b{i}")),
                    id: Some(format!("b{i}")),
                    color: Some(*color),
                    variant: Some(BadgeVariant::ALL[i % BadgeVariant::ALL.len()]),
                    size: Some(BadgeSize::ALL[i % BadgeSize::ALL.len()]),
                    pill: Some(i % 2 == 0),
                    ..Badge::new(color.as_str())
                }
                .into(),
            );
        }

        let mut buttons: Vec<WidgetComponent> = Vec::new();
        for (i, color) in ButtonColor::ALL.iter().enumerate() {
            buttons.push(
                Button {
                    key: Some(format!("btn{i}")),
                    id: Some(format!("btn{i}")),
                    submit: Some(false),
                    label: Some(color.as_str().into()),
                    on_click_action: Some(
                        action
                            .clone()
                            .loading(LoadingBehavior::ALL[i % LoadingBehavior::ALL.len()]),
                    ),
                    icon_start: Some(IconName::Check),
                    icon_end: Some(IconName::ChevronRight),
                    style: Some(ButtonStyle::ALL[i % ButtonStyle::ALL.len()]),
                    icon_size: Some(ButtonIconSize::ALL[i % ButtonIconSize::ALL.len()]),
                    color: Some(*color),
                    variant: Some(ControlVariant::ALL[i % ControlVariant::ALL.len()]),
                    size: Some(ControlSize::ALL[i % ControlSize::ALL.len()]),
                    pill: Some(true),
                    uniform: Some(false),
                    block: Some(false),
                    disabled: Some(false),
                }
                .into(),
            );
        }
        for size in ControlSize::ALL {
            buttons.push(
                Button {
                    size: Some(*size),
                    label: Some(size.as_str().into()),
                    ..Button::default()
                }
                .into(),
            );
        }
        for icon_size in ButtonIconSize::ALL {
            buttons.push(
                Button {
                    icon_start: Some(IconName::Plus),
                    icon_size: Some(*icon_size),
                    ..Button::default()
                }
                .into(),
            );
        }
        for handler in Handler::ALL {
            let mut a = ActionConfig::new("sample.handler");
            a.handler = *handler;
            a.streaming = false;
            buttons.push(
                Button {
                    label: Some(handler.as_str().into()),
                    on_click_action: Some(a),
                    ..Button::default()
                }
                .into(),
            );
        }
        buttons.push(
            Checkbox {
                key: Some("cb".into()),
                id: Some("cb".into()),
                label: Some("Check me".into()),
                default_checked: Some(true),
                on_change_action: Some(action.clone()),
                disabled: Some(false),
                required: Some(false),
                ..Checkbox::new("cb_field")
            }
            .into(),
        );

        let icons: Vec<WidgetComponent> = IconName::ALL
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Icon {
                    key: Some(name.as_str().into()),
                    id: None,
                    name: *name,
                    color: Some(Color::Css("blue-500".into())),
                    size: Some(IconSize::ALL[i % IconSize::ALL.len()]),
                }
                .into()
            })
            .collect();

        let mut layouts: Vec<WidgetComponent> = Vec::new();
        let full = Container {
            key: Some("full".into()),
            id: Some("full".into()),
            children: vec![Text::new("inside").into()],
            align: Some(Alignment::Center),
            justify: Some(Justification::Between),
            wrap: Some(Wrap::Wrap),
            flex: Some(Length::Int(1)),
            gap: Some(Length::Int(2)),
            height: Some(Length::Css("40px".into())),
            width: Some(Length::Css("100%".into())),
            size: Some(Length::Int(40)),
            min_height: Some(Length::Int(1)),
            min_width: Some(Length::Int(1)),
            min_size: Some(Length::Int(1)),
            max_height: Some(Length::Int(900)),
            max_width: Some(Length::Int(900)),
            max_size: Some(Length::Int(900)),
            padding: Some(Inset::Sides(Spacing {
                top: Some(Length::Int(1)),
                right: Some(Length::Css("4px".into())),
                bottom: Some(Length::Int(1)),
                left: Some(Length::Int(1)),
                x: Some(Length::Int(2)),
                y: Some(Length::Int(2)),
            })),
            margin: Some(Inset::All(Length::Int(1))),
            radius: Some(Radius::Md),
            background: Some(Color::Css("surface-secondary".into())),
        };
        layouts.push(WidgetComponent::row(full.clone()));
        layouts.push(WidgetComponent::col(full.clone()));
        for direction in Direction::ALL {
            layouts.push(
                BoxLayout {
                    container: full.clone(),
                    direction: Some(*direction),
                }
                .into(),
            );
        }
        for align in Alignment::ALL {
            layouts.push(WidgetComponent::row(Container {
                align: Some(*align),
                ..Container::default()
            }));
        }
        for justify in Justification::ALL {
            layouts.push(WidgetComponent::col(Container {
                justify: Some(*justify),
                ..Container::default()
            }));
        }
        for wrap in Wrap::ALL {
            layouts.push(WidgetComponent::row(Container {
                wrap: Some(*wrap),
                ..Container::default()
            }));
        }
        for radius in Radius::ALL {
            layouts.push(
                BoxLayout {
                    container: Container {
                        radius: Some(*radius),
                        ..Container::default()
                    },
                    direction: None,
                }
                .into(),
            );
        }
        layouts.push(
            Divider {
                key: Some("d".into()),
                id: Some("d".into()),
                color: Some(Color::Css("subtle".into())),
                size: Some(Length::Int(1)),
                spacing: Some(Length::Int(4)),
                flush: Some(true),
            }
            .into(),
        );
        layouts.push(
            Spacer {
                key: Some("s".into()),
                id: Some("s".into()),
                min_size: Some(Length::Int(8)),
            }
            .into(),
        );
        layouts.push(Spacer::default().into());
        layouts.push(Divider::default().into());

        let card = |children: Vec<WidgetComponent>| -> WidgetRoot { Card::of(children).into() };
        let mut roots = vec![
            ("catalogue: text", card(texts)),
            ("catalogue: badges", card(badges)),
            ("catalogue: controls", card(buttons)),
            ("catalogue: icons", card(icons)),
            ("catalogue: layout", card(layouts)),
        ];
        for (i, size) in CardSize::ALL.iter().enumerate() {
            roots.push((
                "catalogue: card props",
                Card {
                    key: Some("card".into()),
                    id: Some("card".into()),
                    as_form: Some(i % 2 == 0),
                    children: vec![Text::new("body").into()],
                    background: Some(Color::Theme(ThemeColor {
                        light: "white".into(),
                        dark: "black".into(),
                    })),
                    size: Some(*size),
                    padding: Some(Inset::All(Length::Css("12px".into()))),
                    status: Some(WidgetStatus::Icon {
                        text: "Working".into(),
                        icon: Some(IconName::Sparkle),
                    }),
                    collapsed: Some(false),
                    confirm: Some(CardAction {
                        label: "OK".into(),
                        action: action.clone(),
                    }),
                    cancel: Some(CardAction {
                        label: "Cancel".into(),
                        action: ActionConfig::new("sample.cancel"),
                    }),
                    theme: Some(Theme::ALL[i % Theme::ALL.len()]),
                }
                .into(),
            ));
        }
        for (limit, theme) in [
            (ListLimit::Count(3), Theme::Light),
            (ListLimit::Auto, Theme::Dark),
        ] {
            roots.push((
                "catalogue: list view",
                ListView {
                    key: Some("list".into()),
                    id: Some("list".into()),
                    children: vec![
                        ListViewItem {
                            key: Some("i1".into()),
                            id: Some("i1".into()),
                            children: vec![Text::new("one").into()],
                            on_click_action: Some(action.clone()),
                            gap: Some(Length::Int(2)),
                            align: Some(Alignment::Center),
                        },
                        ListViewItem {
                            children: vec![Text::new("two").into()],
                            ..ListViewItem::default()
                        },
                    ],
                    limit: Some(limit),
                    status: Some(WidgetStatus::Favicon {
                        text: "From the web".into(),
                        favicon: Some("https://example.com/favicon.ico".into()),
                        frame: Some(true),
                    }),
                    theme: Some(theme),
                }
                .into(),
            ));
        }
        roots.push(("catalogue: empty list view", ListView::default().into()));
        roots.push(("catalogue: empty card", Card::default().into()));
        roots
    }

    #[test]
    fn roots_and_items_carry_their_type_and_only_set_props() {
        let card: WidgetRoot = Card::of(vec![Text::new("hi").into()]).into();
        assert_eq!(
            to_value(&card).unwrap(),
            json!({"type": "Card", "children": [{"type": "Text", "value": "hi"}]})
        );
        let list: WidgetRoot = ListView {
            children: vec![ListViewItem {
                children: vec![Title::new("t").into()],
                gap: Some(Length::Int(2)),
                ..ListViewItem::default()
            }],
            limit: Some(ListLimit::Auto),
            ..ListView::default()
        }
        .into();
        assert_eq!(
            to_value(&list).unwrap(),
            json!({"type": "ListView", "limit": "auto", "children": [
                {"type": "ListViewItem", "gap": 2, "children": [{"type": "Title", "value": "t"}]}
            ]})
        );
        let counted = ListView {
            limit: Some(ListLimit::Count(5)),
            ..ListView::default()
        };
        assert_eq!(to_value(&counted).unwrap()["limit"], json!(5));
    }

    #[test]
    fn props_are_camel_case() {
        let text = Text {
            line_through: Some(true),
            text_align: Some(TextAlign::Center),
            min_lines: Some(1),
            max_lines: Some(2),
            color: Some(TextColor::Secondary.into()),
            ..Text::new("x")
        };
        assert_eq!(
            component(text),
            json!({"type": "Text", "value": "x", "lineThrough": true, "textAlign": "center",
                   "minLines": 1, "maxLines": 2, "color": "secondary"})
        );
        let button = Button {
            label: Some("Go".into()),
            on_click_action: Some(ActionConfig::new("go")),
            icon_start: Some(IconName::CheckCircleFilled),
            icon_end: Some(IconName::WriteAlt2),
            icon_size: Some(ButtonIconSize::TwoXl),
            color: Some(ButtonColor::Danger),
            variant: Some(ControlVariant::Ghost),
            size: Some(ControlSize::ThreeXs),
            ..Button::default()
        };
        assert_eq!(
            component(button),
            json!({"type": "Button", "label": "Go",
                   "onClickAction": {"type": "go", "handler": "server",
                                     "loadingBehavior": "auto", "streaming": true},
                   "iconStart": "check-circle-filled", "iconEnd": "write-alt2", "iconSize": "2xl",
                   "color": "danger", "variant": "ghost", "size": "3xs"})
        );
        let checkbox = Checkbox {
            default_checked: Some(false),
            on_change_action: Some(ActionConfig::new("flip").loading(LoadingBehavior::SelfOnly)),
            ..Checkbox::new("done")
        };
        assert_eq!(
            component(checkbox),
            json!({"type": "Checkbox", "name": "done", "defaultChecked": false,
                   "onChangeAction": {"type": "flip", "handler": "server",
                                      "loadingBehavior": "self", "streaming": true}})
        );
    }

    #[test]
    fn containers_always_send_children_and_box_adds_direction() {
        assert_eq!(
            to_value(WidgetComponent::row(Container::default())).unwrap(),
            json!({"type": "Row", "children": []})
        );
        let col = WidgetComponent::col(Container {
            min_width: Some(Length::Css("10rem".into())),
            padding: Some(Inset::Sides(Spacing {
                x: Some(Length::Int(4)),
                ..Spacing::default()
            })),
            margin: Some(2.into()),
            radius: Some(Radius::Percent100),
            ..Container::of(vec![Spacer::default().into()])
        });
        assert_eq!(
            to_value(col).unwrap(),
            json!({"type": "Col", "children": [{"type": "Spacer"}], "minWidth": "10rem",
                   "padding": {"x": 4}, "margin": 2, "radius": "100%"})
        );
        let boxed = BoxLayout {
            container: Container {
                gap: Some(3.into()),
                ..Container::default()
            },
            direction: Some(Direction::Col),
        };
        assert_eq!(
            component(boxed),
            json!({"type": "Box", "children": [], "gap": 3, "direction": "col"})
        );
    }

    #[test]
    fn the_small_components() {
        assert_eq!(
            component(Badge {
                color: Some(BadgeColor::Success),
                variant: Some(BadgeVariant::Soft),
                pill: Some(true),
                ..Badge::new("done")
            }),
            json!({"type": "Badge", "label": "done", "color": "success", "variant": "soft",
                   "pill": true})
        );
        assert_eq!(component(Divider::default()), json!({"type": "Divider"}));
        assert_eq!(
            component(Spacer {
                min_size: Some(8.into()),
                ..Spacer::default()
            }),
            json!({"type": "Spacer", "minSize": 8})
        );
        assert_eq!(
            component(Icon {
                size: Some(IconSize::Sm),
                color: Some(Color::Theme(ThemeColor {
                    light: "black".into(),
                    dark: "white".into()
                })),
                ..Icon::new(IconName::BookOpen)
            }),
            json!({"type": "Icon", "name": "book-open", "size": "sm",
                   "color": {"light": "black", "dark": "white"}})
        );
        assert_eq!(
            component(Markdown::new("*x*")),
            json!({"type": "Markdown", "value": "*x*"})
        );
        assert_eq!(
            component(Caption {
                size: Some(CaptionSize::Lg),
                ..Caption::new("c")
            }),
            json!({"type": "Caption", "value": "c", "size": "lg"})
        );
        assert_eq!(
            component(Title {
                size: Some(TitleSize::FiveXl),
                weight: Some(FontWeight::Semibold),
                ..Title::new("t")
            }),
            json!({"type": "Title", "value": "t", "size": "5xl", "weight": "semibold"})
        );
    }

    #[test]
    fn card_props_and_statuses() {
        let card = Card {
            as_form: Some(true),
            size: Some(CardSize::Full),
            status: Some(WidgetStatus::Icon {
                text: "Saved".into(),
                icon: None,
            }),
            confirm: Some(CardAction {
                label: "OK".into(),
                action: ActionConfig::new("ok"),
            }),
            theme: Some(Theme::Dark),
            ..Card::default()
        };
        assert_eq!(
            to_value(WidgetRoot::from(card)).unwrap(),
            json!({"type": "Card", "asForm": true, "children": [], "size": "full",
                   "status": {"text": "Saved"},
                   "confirm": {"label": "OK", "action": {"type": "ok", "handler": "server",
                               "loadingBehavior": "auto", "streaming": true}},
                   "theme": "dark"})
        );
        let favicon = WidgetStatus::Favicon {
            text: "Site".into(),
            favicon: Some("https://x.test/f.ico".into()),
            frame: None,
        };
        assert_eq!(
            to_value(favicon).unwrap(),
            json!({"text": "Site", "favicon": "https://x.test/f.ico"})
        );
    }

    #[test]
    fn action_payloads_are_objects() {
        #[derive(Serialize)]
        struct Payload {
            task_id: i64,
        }
        let action = ActionConfig::new("task.complete")
            .with_payload(&Payload { task_id: 3 })
            .unwrap();
        assert_eq!(
            to_value(&action).unwrap(),
            json!({"type": "task.complete", "payload": {"task_id": 3}, "handler": "server",
                   "loadingBehavior": "auto", "streaming": true})
        );
        assert!(ActionConfig::new("x").with_payload(&3).is_err());
        assert!(ActionConfig::new("x").with_payload(&[1, 2]).is_err());
        assert!(ActionConfig::new("x").with_payload("s").is_err());
    }

    #[test]
    fn literals_are_spelt_as_the_sdk_spells_them() {
        // The serialised form and `as_str` agree for every value.
        fn agree<T: Serialize + Copy>(all: &[T], name: impl Fn(T) -> &'static str) {
            for v in all {
                assert_eq!(to_value(v).unwrap(), json!(name(*v)));
            }
        }
        agree(IconName::ALL, IconName::as_str);
        agree(Radius::ALL, Radius::as_str);
        agree(ControlSize::ALL, ControlSize::as_str);
        agree(LoadingBehavior::ALL, LoadingBehavior::as_str);
        assert_eq!(IconName::ALL.len(), 64);
        assert_eq!(LoadingBehavior::SelfOnly.as_str(), "self");
        assert_eq!(Radius::Percent100.as_str(), "100%");
    }

    #[test]
    fn the_catalogue_has_no_nulls() {
        fn nulls(v: &Value) -> bool {
            match v {
                Value::Null => true,
                Value::Array(a) => a.iter().any(nulls),
                Value::Object(o) => o.values().any(nulls),
                _ => false,
            }
        }
        for (name, root) in catalogue() {
            assert!(!nulls(&to_value(&root).unwrap()), "{name}");
        }
    }
}
