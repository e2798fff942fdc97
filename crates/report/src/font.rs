//! The CJK font the PDF is set in. It is embedded in the PDF, subset to the glyphs used, so the
//! file reads the same on any machine. Debian's `fonts-noto-cjk` (Noto Sans CJK, SIL Open Font
//! License; deploy/local/env.sh installs it) is found by default; `WHISTLE_REPORT_FONT` names
//! another font file (e.g. `fonts-wqy-microhei`'s).

use std::{path::Path, sync::Arc};

use anyhow::{bail, Context as _};
use usvg::fontdb;

/// The environment variable naming the font file.
pub const FONT_ENV: &str = "WHISTLE_REPORT_FONT";

/// Where Debian's CJK font packages put their files, preferred first.
const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
];

/// A loaded font: the face for krilla's own text and a font database holding it for the charts.
#[derive(Clone)]
pub struct Font {
    pub(crate) face: krilla::text::Font,
    pub(crate) family: String,
    pub(crate) db: Arc<fontdb::Database>,
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Font")
            .field("family", &self.family)
            .finish()
    }
}

impl Font {
    /// The file of `WHISTLE_REPORT_FONT`, else the first of Debian's CJK fonts installed.
    pub fn load() -> anyhow::Result<Font> {
        if let Some(path) = std::env::var_os(FONT_ENV) {
            return Font::from_file(Path::new(&path))
                .with_context(|| format!("the font of {FONT_ENV}"));
        }
        match CANDIDATES.iter().map(Path::new).find(|p| p.is_file()) {
            Some(path) => Font::from_file(path),
            None => bail!(
                "no CJK font for the PDF: install Debian's fonts-noto-cjk (deploy/local/env.sh \
                 does) or name a font file with {FONT_ENV}"
            ),
        }
    }

    /// The face of `path` for Simplified Chinese: in a collection, the face whose family name
    /// says SC (Noto Sans CJK SC), else the first; it must have glyphs for Chinese.
    pub fn from_file(path: &Path) -> anyhow::Result<Font> {
        let data =
            std::fs::read(path).with_context(|| format!("reading the font {}", path.display()))?;
        Font::from_data(data).with_context(|| format!("the font {}", path.display()))
    }

    pub fn from_data(data: Vec<u8>) -> anyhow::Result<Font> {
        let data = Arc::new(data);
        let mut db = fontdb::Database::new();
        db.load_font_source(fontdb::Source::Binary(data.clone()));
        let faces: Vec<_> = db.faces().collect();
        let face = faces
            .iter()
            .find(|f| f.families.iter().any(|(name, _)| name.ends_with(" SC")))
            .or(faces.first())
            .context("not a font file")?;
        let family = face
            .families
            .first()
            .map(|(name, _)| name.clone())
            .context("a font without a family name")?;
        let index = face.index;
        let covers_chinese = db
            .with_face_data(face.id, |bytes, index| {
                ttf_parser::Face::parse(bytes, index).ok().is_some_and(|f| {
                    "考核通报街道部门"
                        .chars()
                        .all(|c| f.glyph_index(c).is_some())
                })
            })
            .unwrap_or(false);
        if !covers_chinese {
            bail!("its face {family} has no glyphs for Chinese");
        }
        let face = krilla::text::Font::new(krilla::Data::from(data), index)
            .context("krilla cannot read the face")?;
        // The charts name the family; SVG's generic sans-serif resolves to it too.
        db.set_sans_serif_family(family.clone());
        Ok(Font {
            face,
            family,
            db: Arc::new(db),
        })
    }
}
