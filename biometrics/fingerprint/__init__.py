"""Fingerprints: image -> template -> matcher, as SourceAFIS.

- ``extract(image, dpi)`` -> ``FingerprintTemplate``: minutiae from LEADER (a small neural
  network in ``pyfing``) and the image's NFIQ 2 quality; ``quality(image, dpi)``: NFIQ 2 alone.
- ``FingerprintTemplate``: frozen minutiae; ``to_iso19794_2`` / ``from_iso19794_2`` (ISO/IEC
  19794-2:2005) and ``from_ansi378`` (ANSI/INCITS 378-2004).
- ``compare(a, b)``, ``FingerprintMatcher(probe).match(candidate)``: Minutia Cylinder-Code
  with LSS-R, in bits of evidence (a threshold of t bits has an FMR of about 2**-t);
  rotation (full circle) and translation invariant. ``paired_minutiae(a, b)``: the minutia
  pairs a comparison rests on, for an examiner.
- ``FingerImage``: an image as an ISO/IEC 19794-4:2005 record (WSQ, PNG or JPEG 2000) and
  back; ``read_image_header(record)`` checks one without decoding it.
- ``FingerprintGallery``: 1:N search with a descriptor pre-selection; ``descriptor(t)``: the
  fixed-length descriptor it pre-selects by; ``index_code(t)``: the 256-bit code of it that
  ``biometrics.gallery.FingerGallery`` indexes.

Images are 2-D arrays (uint8, or uint16 scaled from their real bit depth; RGB is converted),
dark ridges on a light background; other resolutions than 500 dpi are resampled.
"""

from biometrics.fingerprint._extraction import ExtractionSettings, extract, quality
from biometrics.fingerprint._image import (
    FingerImage,
    FingerImageError,
    FingerImageHeader,
)
from biometrics.fingerprint._image import read_header as read_image_header
from biometrics.fingerprint._iso import (
    DPI,
    FingerPosition,
    FingerprintError,
    FingerprintTemplate,
    Minutia,
    MinutiaKind,
    TemplateFormatError,
)
from biometrics.fingerprint._mcc import (
    CODE_BITS,
    DESCRIPTOR_SIZE,
    FingerprintGallery,
    FingerprintMatcher,
    compare,
    descriptor,
    index_code,
    paired_minutiae,
    score_to_bits,
)

# The name and version of what makes and compares templates (stored with every reference:
# templates of different versions are never compared)
ALGORITHM = "leader-mcc/1"

__all__ = [
    "ALGORITHM",
    "CODE_BITS",
    "DESCRIPTOR_SIZE",
    "DPI",
    "ExtractionSettings",
    "FingerImage",
    "FingerImageError",
    "FingerImageHeader",
    "FingerPosition",
    "FingerprintError",
    "FingerprintGallery",
    "FingerprintMatcher",
    "FingerprintTemplate",
    "Minutia",
    "MinutiaKind",
    "TemplateFormatError",
    "compare",
    "descriptor",
    "extract",
    "index_code",
    "paired_minutiae",
    "quality",
    "read_image_header",
    "score_to_bits",
]
