"""De-identification following DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

What :func:`deidentify` does to a copy of a dataset (see docs/domain.md section 7):

* replaces with dummy or empty values: Patient's Name and ID (``ANONYMOUS``),
  Birth Date, Sex, Accession Number, Study Date and Time, Referring Physician,
  Study ID (empty);
* removes the identifying attributes of Table E.1-1 (other patient IDs, address,
  telephones, age, size, weight, ethnic group, occupation, history, comments,
  institution, station, serial numbers, operators, physicians, study and series
  descriptions, protocol names, request and procedure-step attributes, original
  and modified attribute sequences, icon images, digital signatures...), all
  private tags, overlays (60xx) and curves (50xx);
* as a catch-all for attributes the table lists with ``X``/``Z``/``D`` actions that
  could carry identity: removes every remaining person name (PN), age (AS),
  application entity title (AE), URL (UR) and free text (LT, ST, UT, UC), and
  empties every remaining date and time (DA, DT, TM);
* replaces every UID that is not a well-known DICOM UID (SOP classes, transfer
  syntaxes, coding schemes) consistently through a :class:`UidMap`;
* sets Patient Identity Removed (0012,0062) = ``YES``, De-identification Method
  (0012,0063) and its code sequence (DCM 113100), and Longitudinal Temporal
  Information Modified (0028,0303) = ``REMOVED``.

Pixel data are kept; a file that declares Burned In Annotation (0028,0301) =
``YES`` is refused by :func:`write_deidentified_series`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
import warnings
from pathlib import Path

import pydicom
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from surgsim.dicom.discover import SeriesInfo
from surgsim.errors import DicomSeriesError

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "REMOVED_KEYWORDS",
    "UidMap",
    "deidentify",
    "write_deidentified_series",
]

#: De-identification Method (0012,0063), LO: at most 64 characters.
DEIDENTIFICATION_METHOD = "surgsim: PS3.15 E.1-1 Basic Profile, private tags removed"
DUMMY_NAME = "ANONYMOUS"

#: Attributes replaced by a dummy value (type 1 in many IODs).
DUMMY_KEYWORDS = {"PatientName": DUMMY_NAME, "PatientID": DUMMY_NAME}

#: Attributes kept but emptied (type 2).
EMPTY_KEYWORDS = (
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
)

#: Attributes removed wherever they occur (PS3.15 Table E.1-1, action X or X/Z/D...).
REMOVED_KEYWORDS = frozenset({
    "IssuerOfAccessionNumberSequence",
    "AcquisitionComments",
    "AcquisitionContextSequence",
    "AcquisitionDeviceProcessingDescription",
    "AcquisitionProtocolDescription",
    "ActualHumanPerformersSequence",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDate",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "AdmittingTime",
    "Allergies",
    "Arbitrary",
    "AuthorObserverSequence",
    "BranchOfService",
    "CassetteID",
    "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription",
    "ContentCreatorName",
    "ContentCreatorIdentificationCodeSequence",
    "ContributionDescription",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "CustodialOrganizationSequence",
    "DataSetTrailingPadding",
    "DerivationDescription",
    "DetectorID",
    "DeviceSerialNumber",
    "DeviceUID",
    "DigitalSignaturesSequence",
    "DischargeDiagnosisDescription",
    "DistributionAddress",
    "DistributionName",
    "EncryptedAttributesSequence",
    "EthnicGroup",
    "FrameComments",
    "GantryID",
    "GeneratorID",
    "HumanPerformerName",
    "HumanPerformerOrganization",
    "IconImageSequence",
    "IdentifyingComments",
    "ImageComments",
    "ImagePresentationComments",
    "ImagingServiceRequestComments",
    "Impressions",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence",
    "InterpretationAuthor",
    "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer",
    "InterpretationRecorder",
    "InterpretationText",
    "InterpretationTranscriber",
    "IssuerOfAdmissionID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "IssuerOfServiceEpisodeID",
    "LastMenstrualDate",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ModifiedAttributesSequence",
    "ModifiedImageDescription",
    "ModifyingDeviceID",
    "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults",
    "Occupation",
    "OperatorIdentificationSequence",
    "OperatorsName",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OriginalAttributesSequence",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "ParticipantSequence",
    "PatientAddress",
    "PatientAge",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientReligiousPreference",
    "PatientSize",
    "PatientState",
    "PatientTelephoneNumbers",
    "PatientTransportArrangements",
    "PatientWeight",
    "PerformedLocation",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence",
    "PerformedStationName",
    "PerformedStationNameCodeSequence",
    "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PersonAddress",
    "PersonName",
    "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "PreMedication",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForTheImagingServiceRequest",
    "ReasonForTheRequestedProcedure",
    "ReasonForVisit",
    "ReasonForVisitCodeSequence",
    "ReasonForStudy",
    "ReferencedDigitalSignatureSequence",
    "ReferencedPatientAliasSequence",
    "ReferencedPatientPhotoSequence",
    "ReferencedPatientSequence",
    "ReferencedSOPInstanceMACSequence",
    "ReferencedStudySequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedContrastAgent",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestedProcedureLocation",
    "RequestingPhysician",
    "RequestingService",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ResultsComments",
    "ResultsDistributionListSequence",
    "ResultsIDIssuer",
    "ScheduledHumanPerformersSequence",
    "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledStationName",
    "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "SeriesDescription",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SmokingStatus",
    "SourceApplicationEntityTitle",
    "SpecialNeeds",
    "StationAETitle",
    "StationName",
    "StudyComments",
    "StudyDescription",
    "StudyIDIssuer",
    "TextComments",
    "TextString",
    "TopicAuthor",
    "TopicKeywords",
    "TopicSubject",
    "TopicTitle",
    "VerifyingObserverIdentificationCodeSequence",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VerifyingOrganization",
    "VisitComments",
})

#: Value representations removed wherever they remain after the named rules.
_REMOVED_VRS = {"PN", "AS", "AE", "UR", "LT", "ST", "UT", "UC"}
#: Value representations emptied (dates and times).
_EMPTIED_VRS = {"DA", "DT", "TM"}

_FILE_META_REMOVED = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "SourcePresentationAddress",
    "SendingPresentationAddress",
    "ReceivingPresentationAddress",
    "PrivateInformationCreatorUID",
    "PrivateInformation",
)

_REMOVED_TAGS = frozenset(t for t in (tag_for_keyword(k) for k in REMOVED_KEYWORDS) if t is not None)
_KEEP_TOP_LEVEL = {tag_for_keyword(k) for k in (*DUMMY_KEYWORDS, *EMPTY_KEYWORDS)}

_SOP_CLASS_BY_MODALITY = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}


class UidMap:
    """Consistent, non-reversible replacement of UIDs within one import.

    The same input UID always maps to the same new UID for one ``UidMap``;
    new UIDs are ``2.25.<decimal of 128 bits of HMAC-SHA256(salt, uid)>``, so
    without the per-import salt nothing links them back to the originals.

    Parameters
    ----------
    salt : bytes, optional
        Secret of this import; 32 random bytes when omitted (pass one only to
        reproduce a mapping in tests).
    """

    def __init__(self, salt: bytes | None = None) -> None:
        self._salt = salt if salt is not None else secrets.token_bytes(32)
        self._map: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        """Return the replacement of ``uid`` (empty stays empty)."""
        return self.map(uid)

    def map(self, uid: str) -> str:
        """Return the replacement of ``uid`` (empty stays empty)."""
        key = str(uid).strip().rstrip("\x00").strip()
        if not key:
            return ""
        new = self._map.get(key)
        if new is None:
            digest = hmac.new(self._salt, key.encode("utf-8"), hashlib.sha256).digest()
            new = "2.25." + str(int.from_bytes(digest[:16], "big"))
            self._map[key] = new
        return new

    def __len__(self) -> int:
        return len(self._map)


def _is_well_known_uid(uid: str) -> bool:
    return uid in UID_dictionary


def _map_uid_value(value, uid_map: UidMap):
    if isinstance(value, MultiValue | list | tuple):
        return [_map_uid_value(v, uid_map) for v in value]
    text = str(value).strip().rstrip("\x00")
    if not text or _is_well_known_uid(text):
        return text
    return uid_map.map(text)


def _is_overlay_or_curve(tag) -> bool:
    group = tag.group
    return (0x6000 <= group <= 0x60FF and group % 2 == 0) or (0x5000 <= group <= 0x50FF and group % 2 == 0)


def _clean(ds: Dataset, uid_map: UidMap, top_level: bool) -> None:
    """Apply the element rules to ``ds`` and, recursively, to its sequences."""
    for tag in list(ds.keys()):
        elem: DataElement = ds[tag]
        if tag.is_private or tag in _REMOVED_TAGS or _is_overlay_or_curve(tag):
            del ds[tag]
            continue
        if top_level and tag in _KEEP_TOP_LEVEL:
            continue  # set below
        vr = elem.VR
        if vr in _REMOVED_VRS:
            del ds[tag]
        elif vr in _EMPTIED_VRS:
            elem.value = ""
        elif vr == "UI":
            elem.value = _map_uid_value(elem.value, uid_map)
        elif vr == "SQ":
            items = elem.value or []
            for item in items:
                _clean(item, uid_map, top_level=False)


def deidentify(ds: Dataset, uid_map: UidMap) -> Dataset:
    """Return a de-identified copy of ``ds`` (the input is not modified).

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset as read by ``pydicom.dcmread`` (pixel data are kept).
    uid_map : UidMap
        Shared by every file of one import so references stay consistent.

    Returns
    -------
    pydicom.Dataset
        Dummy/empty patient and study identifiers, identifying attributes and
        all private tags removed, UIDs replaced, Patient Identity Removed = YES.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = copy.deepcopy(ds)
        _clean(out, uid_map, top_level=True)
        for keyword, value in DUMMY_KEYWORDS.items():
            setattr(out, keyword, value)
        for keyword in EMPTY_KEYWORDS:
            setattr(out, keyword, "")
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = DEIDENTIFICATION_METHOD
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        out.DeidentificationMethodCodeSequence = Sequence([code])
        out.LongitudinalTemporalInformationModified = "REMOVED"
        meta = getattr(ds, "file_meta", None)
        new_meta = FileMetaDataset()
        if meta is not None:
            for elem in meta:
                if elem.keyword in _FILE_META_REMOVED or elem.tag.is_private:
                    continue
                new_meta.add(copy.deepcopy(elem))
        if "MediaStorageSOPInstanceUID" in new_meta:
            new_meta.MediaStorageSOPInstanceUID = _map_uid_value(
                new_meta.MediaStorageSOPInstanceUID, uid_map
            )
        if out.get("SOPInstanceUID"):
            new_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        new_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        new_meta.ImplementationVersionName = f"SURGSIM_PYDICOM{pydicom.__version__}"[:16]
        out.file_meta = new_meta
        if hasattr(out, "preamble"):
            out.preamble = b"\x00" * 128
    return out


def write_deidentified_series(info: SeriesInfo, out_dir: Path | str) -> list[Path]:
    """Write a de-identified copy of every file of ``info`` into ``out_dir``.

    Files are named ``00000.dcm``, ``00001.dcm``... in slice order (original
    names may carry identifiers). One :class:`UidMap` with a fresh salt is used
    for the whole series; an empty SeriesInstanceUID or SOPInstanceUID is given
    a new UID so that the copy groups and loads as one series.

    Parameters
    ----------
    info : SeriesInfo
        A series from :func:`surgsim.dicom.discover.discover`.
    out_dir : Path
        Created if needed.

    Returns
    -------
    list of Path
        The written files.

    Raises
    ------
    DicomSeriesError
        A file cannot be read or written, or declares burned-in annotation.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DicomSeriesError(f"{out_dir}: cannot create folder ({exc.strerror}); choose a writable folder") from None
    uid_map = UidMap()
    series_uid = uid_map.map(f"surgsim-series:{info.key}")
    written: list[Path] = []
    for n, src in enumerate(info.files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(src, force=True)
        except Exception as exc:
            raise DicomSeriesError(
                f"{src}: cannot read for de-identification ({type(exc).__name__}: {exc}); "
                "remove or replace the file"
            ) from None
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            raise DicomSeriesError(
                f"{src}: Burned In Annotation (0028,0301) is YES: the pixels may show patient "
                "data and cannot be de-identified automatically; export the series without "
                "annotations from the scanner or PACS"
            )
        clean = deidentify(ds, uid_map)
        if not clean.get("SeriesInstanceUID"):
            clean.SeriesInstanceUID = series_uid
        if not clean.get("SOPInstanceUID"):
            clean.SOPInstanceUID = uid_map.map(f"surgsim-instance:{info.key}:{n}")
        clean.file_meta.MediaStorageSOPInstanceUID = clean.SOPInstanceUID
        sop_class = str(clean.get("SOPClassUID", "") or "") or str(
            clean.file_meta.get("MediaStorageSOPClassUID", "") or ""
        )
        if not sop_class:
            sop_class = _SOP_CLASS_BY_MODALITY.get(info.modality, "")
        if sop_class:
            clean.file_meta.MediaStorageSOPClassUID = sop_class
        if not clean.file_meta.get("TransferSyntaxUID"):
            implicit = ds.original_encoding[0]
            clean.file_meta.TransferSyntaxUID = (
                pydicom.uid.ImplicitVRLittleEndian if implicit in (True, None)
                else pydicom.uid.ExplicitVRLittleEndian
            )
        dest = out_dir / f"{n:05d}.dcm"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clean.save_as(dest, enforce_file_format=True)
        except Exception as exc:
            raise DicomSeriesError(
                f"{dest}: cannot write the de-identified copy of {src} "
                f"({type(exc).__name__}: {exc}); check the folder is writable and has space"
            ) from None
        written.append(dest)
    return written
