"""Public emotion corpora read by their own file naming: CREMA-D and RAVDESS.

:func:`read_corpus` reads a corpus folder as it is distributed and returns the labels
table of :func:`dnnrsa.train.read_labels` (all text): ``file`` (relative to the
corpus folder), ``emotion``, ``identity``, ``gender``, ``sentence`` and ``actor``,
``emotion_code`` (the corpus's own emotion code), and the corpus's other name
fields (RAVDESS: ``modality``, ``channel``, ``intensity``, ``repetition``; CREMA-D:
``level``). :func:`actor_split` chooses the actors held out for validation and
:func:`corpus_validation` turns them into the per-regime validation columns and
values of :func:`dnnrsa.train.train_regimes`.

**CREMA-D** (Cao et al. 2014): 91 actors (1001-1091), 12 sentences, 6 emotions.
Files ``VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv`` (audio-visual) or
``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (audio only), and
``VideoDemographics.csv`` (``ActorID``, ``Age``, ``Sex``, ``Race``, ``Ethnicity``),
from which the gender is read. Its emotions are the study's six with *neutral in
place of surprised* (:data:`CREMAD_EMOTIONS`): a network trained on CREMA-D has a
neutral class and no surprised class.

**RAVDESS** (Livingstone & Russo 2018): 24 actors, files
``Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4`` (``.wav`` for audio only): modality, vocal
channel, emotion, intensity, statement, repetition, actor (odd male, even female).
By default the audio-visual speech clips of the study's six emotions are kept (neutral
and calm are dropped), both intensities.

A file that does not follow the corpus's naming, a missing demographics table or a
folder that is not the named corpus raises :class:`CorpusError` (a ``ValueError``)
naming the file and the layout expected; :class:`CorpusMissing`, its subclass, is
raised when something is absent (the folder, the demographics table, every clip, or
clips that are still Git LFS pointers or zip archives).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

CORPORA = ("cremad", "ravdess")

#: The six emotions of the study (as :data:`dnnrsa.demo.design.EMOTIONS`).
STUDY_EMOTIONS = ("angry", "disgusted", "fearful", "happy", "sad", "surprised")

#: CREMA-D emotion codes and the study's names for them (neutral instead of surprised).
CREMAD_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgusted",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
#: CREMA-D sentence codes and the sentences spoken.
CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
#: CREMA-D emotion levels (``X`` is read as unspecified, like ``XX``).
CREMAD_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified", "X": "unspecified"}
CREMAD_ACTORS = range(1001, 1092)
CREMAD_FOLDERS = {"audiovisual": ("VideoFlash", ".flv"), "audio": ("AudioWAV", ".wav")}
CREMAD_DEMOGRAPHICS = "VideoDemographics.csv"
_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")

RAVDESS_MODALITIES = {"01": "audiovisual", "02": "video", "03": "audio"}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
#: RAVDESS emotion codes and their names (``disgust`` is named ``disgusted``, as in the study).
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgusted",
    "08": "surprised",
}
RAVDESS_INTENSITIES = {"01": "normal", "02": "strong"}
#: RAVDESS statement codes and the ``sentence`` label of each (the statement's subject).
RAVDESS_STATEMENTS = {"01": "kids", "02": "dogs"}
RAVDESS_STATEMENT_TEXTS = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}
#: Emotions sung in RAVDESS's song channel.
RAVDESS_SONG_EMOTIONS = ("01", "02", "03", "04", "05", "06")
_RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_RAVDESS_FOLDER = re.compile(r"^Actor_(\d{2})$")
RAVDESS_LAYOUT = (
    "Actor_01 ... Actor_24 folders holding files named MM-VV-EE-II-SS-RR-AA.mp4 "
    "(.wav for audio only), e.g. Actor_01/01-01-03-01-01-01-01.mp4"
)
CREMAD_LAYOUT = (
    "VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv (AudioWAV/...wav for audio only) "
    "and VideoDemographics.csv, e.g. VideoFlash/1001_DFA_ANG_XX.flv"
)

#: Share of each gender's actors held out for validation by :func:`actor_split`.
VALIDATION_FRACTION = 0.2
#: Regimes whose classes are the actors: validated on a held-out sentence instead.
ACTOR_REGIMES = ("identity", "actor")

_LFS_HEADER = b"version https://git-lfs.github.com/spec/"

__all__ = [
    "CORPORA",
    "CREMAD_EMOTIONS",
    "CREMAD_LEVELS",
    "CREMAD_SENTENCES",
    "RAVDESS_EMOTIONS",
    "RAVDESS_STATEMENTS",
    "STUDY_EMOTIONS",
    "VALIDATION_FRACTION",
    "CorpusError",
    "CorpusMissing",
    "actor_split",
    "corpus_validation",
    "default_emotions",
    "describe_split",
    "read_corpus",
    "write_corpus_labels",
]


class CorpusError(ValueError):
    """A corpus folder that does not follow the corpus's layout or naming.

    Attributes
    ----------
    path : Path
        The file or folder at fault.
    """

    def __init__(self, message: str, path: str | os.PathLike):
        super().__init__(message)
        self.path = Path(path)


class CorpusMissing(CorpusError):
    """Something the corpus needs is absent: the folder, the demographics table, the
    clips (none found, or Git LFS pointers or zip archives in their place)."""


# --------------------------------------------------------------------------- reading
def default_emotions(corpus: str) -> tuple[str, ...]:
    """The emotions :func:`read_corpus` keeps by default: the study's six for RAVDESS,
    CREMA-D's six (neutral in place of surprised) for CREMA-D."""
    _check_corpus(corpus)
    return tuple(sorted(CREMAD_EMOTIONS.values())) if corpus == "cremad" else STUDY_EMOTIONS


def read_corpus(
    root: str | os.PathLike,
    corpus: str,
    *,
    modality: str = "audiovisual",
    channel: str = "speech",
    emotions: Sequence[str] | None = None,
    calm: str = "calm",
    intensity: Sequence[str] | None = None,
):
    """The labels table of a corpus folder, from its file names.

    Parameters
    ----------
    root : path-like
        The corpus folder as distributed: for CREMA-D the clone (holding
        ``VideoFlash/`` or ``AudioWAV/`` and ``VideoDemographics.csv``), for RAVDESS
        the folder holding the extracted ``Actor_XX/`` folders.
    corpus : {"cremad", "ravdess"}
    modality : {"audiovisual", "video", "audio"}
        Which recordings: audio-visual (CREMA-D ``VideoFlash/*.flv``, RAVDESS
        modality 01), video only (RAVDESS modality 02) or audio only (CREMA-D
        ``AudioWAV/*.wav``, RAVDESS modality 03).
    channel : {"speech", "song"}
        RAVDESS vocal channel (CREMA-D is speech only).
    emotions : sequence of str, optional
        The emotions kept, by name (``"all"`` for every emotion of the corpus);
        default :func:`default_emotions`.
    calm : {"calm", "neutral"}
        RAVDESS: the label of its calm clips, a class of its own (``"calm"``) or
        merged with neutral (``"neutral"``). Either is kept only when named in
        ``emotions``.
    intensity : sequence of str, optional
        The intensities kept (default: all): RAVDESS ``normal``, ``strong``; CREMA-D
        levels ``LO``, ``MD``, ``HI``, ``XX``, ``X``.

    Returns
    -------
    pandas.DataFrame
        One row per clip kept, sorted by ``file``; every value is text.

    Raises
    ------
    CorpusMissing
        The folder, the demographics table or the clips are absent.
    CorpusError
        A misnamed file, an actor missing from the demographics table, a folder that
        is not the named corpus, or an option that does not fit the corpus.
    """
    import pandas as pd

    _check_corpus(corpus)
    root = Path(root)
    if not root.is_dir():
        raise CorpusMissing(f"{corpus} folder not found: {root}", root)
    if corpus == "cremad":
        rows = _cremad_rows(root, modality, channel, calm)
    else:
        rows = _ravdess_rows(root, modality, channel)
        if calm not in ("calm", "neutral"):
            raise ValueError(f"calm must be 'calm' or 'neutral'; got {calm!r}")
        for row in rows:
            if row["emotion"] == "calm":
                row["emotion"] = calm
    table = pd.DataFrame(rows).sort_values("file", kind="stable").reset_index(drop=True)
    table = _select(table, corpus, root, emotions, intensity, calm)
    logger.info(
        "%s: %d clips of %d actors, emotions %s",
        corpus,
        len(table),
        table["actor"].nunique(),
        sorted(table["emotion"].unique()),
    )
    return table


def _check_corpus(corpus: str) -> None:
    if corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {list(CORPORA)}; got {corpus!r}")


def _select(table, corpus, root, emotions, intensity, calm):
    """Keep the rows of the chosen emotions and intensities (see :func:`read_corpus`)."""
    if corpus == "cremad":
        known = sorted(CREMAD_EMOTIONS.values())
        column, levels = "level", list(CREMAD_LEVELS)
    else:
        known = sorted(set(RAVDESS_EMOTIONS.values()) - ({"calm"} if calm == "neutral" else set()))
        column, levels = "intensity", list(RAVDESS_INTENSITIES.values())
    if emotions is None:
        emotions = default_emotions(corpus)
    elif isinstance(emotions, str):
        emotions = [emotions]
    emotions = known if list(emotions) == ["all"] else [str(e) for e in emotions]
    unknown = sorted(set(emotions) - set(known))
    if unknown:
        raise ValueError(f"emotions {unknown} are not emotions of {corpus} (its emotions: {known})")
    keep = table["emotion"].isin(emotions)
    if intensity is not None:
        intensity = [intensity] if isinstance(intensity, str) else [str(v) for v in intensity]
        wrong = sorted(set(intensity) - set(levels))
        if wrong:
            raise ValueError(
                f"intensity {wrong} is not an intensity of {corpus} (its {column} values: {levels})"
            )
        keep &= table[column].isin(intensity)
    if not keep.any():
        raise CorpusError(
            f"no clip of {root} has the emotions {sorted(emotions)}"
            + (f" and the {column} {intensity}" if intensity is not None else "")
            + f" (found: {sorted(table['emotion'].unique())})",
            root,
        )
    return table[keep].reset_index(drop=True)


def _layout_hint(root: Path, corpus: str) -> str:
    """What the folder looks like instead, when it looks like something."""
    if corpus == "ravdess" and any((root / name).is_dir() for name, _ in CREMAD_FOLDERS.values()):
        return "; it looks like CREMA-D: read it as cremad (--corpus cremad)"
    if corpus == "cremad" and any(_RAVDESS_FOLDER.match(p.name) for p in _subfolders(root)):
        return "; it looks like RAVDESS: read it as ravdess (--corpus ravdess)"
    for sub in _subfolders(root):
        if corpus == "ravdess" and any(_RAVDESS_FOLDER.match(p.name) for p in _subfolders(sub)):
            return f"; {sub} holds Actor_XX folders: give that folder"
        if corpus == "cremad" and (sub / "VideoFlash").is_dir():
            return f"; {sub} holds VideoFlash: give that folder"
    return ""


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _check_not_pointer(path: Path, corpus: str) -> None:
    """Refuse a Git LFS pointer file in place of a clip (a clone without git-lfs)."""
    try:
        if path.stat().st_size > 1024:
            return
        with open(path, "rb") as fh:
            head = fh.read(len(_LFS_HEADER))
    except OSError:
        return
    if head == _LFS_HEADER:
        raise CorpusMissing(
            f"{path} is a Git LFS pointer, not the clip: the {corpus} clone was made without "
            "git-lfs; install git-lfs and run 'git lfs pull' in the clone",
            path,
        )


# --------------------------------------------------------------------------- CREMA-D
def _cremad_rows(root: Path, modality: str, channel: str, calm: str) -> list[dict]:
    if modality not in CREMAD_FOLDERS:
        raise ValueError(
            f"modality must be one of {list(CREMAD_FOLDERS)} for cremad (it has no video-only "
            f"files); got {modality!r}"
        )
    if channel != "speech":
        raise ValueError(f"channel must be 'speech' for cremad (it has no song); got {channel!r}")
    if calm != "calm":
        raise ValueError(f"calm applies to ravdess only (cremad has no calm); got {calm!r}")
    folder_name, ext = CREMAD_FOLDERS[modality]
    folder = root / folder_name
    if not folder.is_dir():
        raise CorpusError(
            f"{root} is not a CREMA-D folder: {folder_name}/ not found; expected "
            f"{CREMAD_LAYOUT}{_layout_hint(root, 'cremad')}",
            folder,
        )
    clips = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ext)
    if not clips:
        raise CorpusMissing(f"{folder} holds no {ext} file; expected {CREMAD_LAYOUT}", folder)
    genders = _cremad_genders(root)
    rows = []
    for path in clips:
        actor, sentence, emotion, level = _parse_cremad(path, ext)
        if actor not in genders:
            raise CorpusError(
                f"actor {actor} of {path} is not in {root / CREMAD_DEMOGRAPHICS} "
                f"(its ActorID column has {len(genders)} actors)",
                root / CREMAD_DEMOGRAPHICS,
            )
        _check_not_pointer(path, "CREMA-D")
        rows.append(
            {
                "file": path.relative_to(root).as_posix(),
                "emotion": CREMAD_EMOTIONS[emotion],
                "identity": f"actor{actor}",
                "gender": genders[actor],
                "sentence": sentence,
                "actor": actor,
                "emotion_code": emotion,
                "level": level,
            }
        )
    return rows


def _parse_cremad(path: Path, ext: str) -> tuple[str, str, str, str]:
    """(actor, sentence, emotion, level) of a CREMA-D file name, checked."""
    match = _CREMAD_NAME.match(path.stem) if path.suffix.lower() == ext else None
    problem = None
    if match is None:
        problem = f"does not follow <actor>_<sentence>_<emotion>_<level>{ext}"
    else:
        actor, sentence, emotion, level = match.groups()
        if int(actor) not in CREMAD_ACTORS:
            problem = f"actor {actor} is not one of 1001-1091"
        elif sentence not in CREMAD_SENTENCES:
            problem = f"sentence {sentence} is not one of {list(CREMAD_SENTENCES)}"
        elif emotion not in CREMAD_EMOTIONS:
            problem = f"emotion {emotion} is not one of {list(CREMAD_EMOTIONS)}"
        elif level not in CREMAD_LEVELS:
            problem = f"level {level} is not one of {list(CREMAD_LEVELS)}"
    if problem is not None:
        raise CorpusError(
            f"misnamed CREMA-D file {path}: {problem} (e.g. 1001_DFA_ANG_XX{ext})", path
        )
    return match.groups()


def _cremad_genders(root: Path) -> dict[str, str]:
    """ActorID -> ``female`` or ``male`` from VideoDemographics.csv."""
    import pandas as pd

    path = root / CREMAD_DEMOGRAPHICS
    if not path.is_file():
        raise CorpusMissing(
            f"{path} not found: CREMA-D's demographics table (columns ActorID, Age, Sex, "
            "Race, Ethnicity) gives each actor's sex",
            path,
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read {path} as CSV: {exc}", path) from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = sorted({"ActorID", "Sex"} - set(table.columns))
    if missing:
        raise CorpusError(
            f"{path} lacks the columns {missing} (columns: {list(table.columns)}; expected "
            "ActorID, Age, Sex, Race, Ethnicity)",
            path,
        )
    genders = {}
    for line, (actor, sex) in enumerate(zip(table["ActorID"], table["Sex"], strict=True), 2):
        actor, sex = actor.strip(), sex.strip().lower()
        if sex not in ("female", "male"):
            raise CorpusError(
                f"{path}, line {line}: Sex of actor {actor} is {sex!r}; expected Male or Female",
                path,
            )
        genders[actor] = sex
    return genders


# --------------------------------------------------------------------------- RAVDESS
def _ravdess_rows(root: Path, modality: str, channel: str) -> list[dict]:
    codes = {v: k for k, v in RAVDESS_MODALITIES.items()}
    if modality not in codes:
        raise ValueError(f"modality must be one of {list(codes)}; got {modality!r}")
    channels = {v: k for k, v in RAVDESS_CHANNELS.items()}
    if channel not in channels:
        raise ValueError(f"channel must be one of {list(channels)}; got {channel!r}")
    folders = [p for p in _subfolders(root) if p.name.startswith("Actor_")]
    if not folders:
        zips = sorted(root.glob("*Actor*.zip"))
        if zips:
            raise CorpusMissing(
                f"{root} holds RAVDESS zip archives ({zips[0].name} ...) but no Actor_XX "
                "folders: extract them there first (each gives its Actor_XX folders)",
                root,
            )
        raise CorpusError(
            f"{root} is not a RAVDESS folder: no Actor_XX folder; expected {RAVDESS_LAYOUT}"
            f"{_layout_hint(root, 'ravdess')}",
            root,
        )
    wanted = (codes[modality], channels[channel])
    rows, found = [], {}
    for folder in folders:
        match = _RAVDESS_FOLDER.match(folder.name)
        if match is None or not 1 <= int(match.group(1)) <= 24:
            raise CorpusError(
                f"misnamed RAVDESS folder {folder}: expected Actor_01 ... Actor_24", folder
            )
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in (".mp4", ".wav"):
                continue
            fields = _parse_ravdess(path, match.group(1))
            found[fields[:2]] = found.get(fields[:2], 0) + 1
            if fields[:2] != wanted:
                continue
            _check_not_pointer(path, "RAVDESS")
            mod, chan, emotion, intensity, statement, repetition, actor = fields
            rows.append(
                {
                    "file": path.relative_to(root).as_posix(),
                    "emotion": RAVDESS_EMOTIONS[emotion],
                    "identity": f"actor{actor}",
                    "gender": "male" if int(actor) % 2 else "female",
                    "sentence": RAVDESS_STATEMENTS[statement],
                    "actor": actor,
                    "emotion_code": emotion,
                    "modality": mod,
                    "channel": chan,
                    "intensity": RAVDESS_INTENSITIES[intensity],
                    "repetition": repetition,
                }
            )
    if not rows:
        kinds = ", ".join(
            f"{n} {RAVDESS_MODALITIES[m]} {RAVDESS_CHANNELS[c]} clips"
            f" (--corpus-modality {RAVDESS_MODALITIES[m]} --corpus-channel {RAVDESS_CHANNELS[c]})"
            for (m, c), n in sorted(found.items())
        )
        where = f"{len(folders)} Actor_XX folders of {root}"
        message = f"no {modality} {channel} clip ({'-'.join(wanted)}-*) in the {where}"
        if found:
            raise CorpusError(f"{message}; found {kinds}", root)
        raise CorpusMissing(f"{message}; expected {RAVDESS_LAYOUT}", root)
    return rows


def _parse_ravdess(path: Path, folder_actor: str) -> tuple[str, ...]:
    """The seven fields of a RAVDESS file name, checked (see :data:`RAVDESS_LAYOUT`)."""
    match = _RAVDESS_NAME.match(path.stem)
    problem = None
    if match is None:
        problem = "does not follow MM-VV-EE-II-SS-RR-AA (seven two-digit fields)"
    else:
        mod, chan, emotion, intensity, statement, repetition, actor = match.groups()
        checks = (
            (mod in RAVDESS_MODALITIES, f"modality {mod} is not 01, 02 or 03"),
            (chan in RAVDESS_CHANNELS, f"vocal channel {chan} is not 01 or 02"),
            (emotion in RAVDESS_EMOTIONS, f"emotion {emotion} is not 01-08"),
            (intensity in RAVDESS_INTENSITIES, f"intensity {intensity} is not 01 or 02"),
            (statement in RAVDESS_STATEMENTS, f"statement {statement} is not 01 or 02"),
            (repetition in ("01", "02"), f"repetition {repetition} is not 01 or 02"),
            (actor == folder_actor, f"actor {actor} is not the folder's, {folder_actor}"),
            (not (emotion == "01" and intensity == "02"), "neutral has no strong intensity (02)"),
            (chan == "01" or emotion in RAVDESS_SONG_EMOTIONS, f"song has no emotion {emotion}"),
            ((mod == "03") == (path.suffix.lower() == ".wav"), "modality 03 is .wav, 01/02 .mp4"),
        )
        problem = next((text for ok, text in checks if not ok), None)
    if problem is not None:
        raise CorpusError(
            f"misnamed RAVDESS file {path}: {problem} (e.g. 01-01-03-01-01-01-{folder_actor}.mp4)",
            path,
        )
    return match.groups()


# --------------------------------------------------------------------------- split
def actor_split(
    table,
    *,
    fraction: float = VALIDATION_FRACTION,
    actors: Sequence[str] | None = None,
) -> list[str]:
    """The actors held out for validation (no actor is in both sets).

    By default, in each gender the last ``round(fraction * n)`` actors in the order
    of their numbers (at least one where the gender has two actors or more, and
    never all of them), so that both genders are in the training and the validation
    set; no randomness is involved. RAVDESS (24 actors, 0.2): 21, 22, 23, 24;
    CREMA-D (48 male, 43 female): the 10 male and the 9 female actors with the
    highest numbers.

    Parameters
    ----------
    table : pandas.DataFrame
        A labels table of :func:`read_corpus` (``actor`` and ``gender`` columns).
    fraction : float
        Share of each gender's actors held out, in (0, 1).
    actors : sequence of str, optional
        The validation actors, given (``"1"`` matches actor ``"01"``); every gender
        must keep a training actor.

    Returns
    -------
    list of str
        Actor codes, sorted.
    """
    by_gender = {
        g: sorted(set(table.loc[table["gender"] == g, "actor"]), key=_actor_key)
        for g in sorted(table["gender"].unique())
    }
    every = sorted(set(table["actor"]), key=_actor_key)
    if actors is not None:
        chosen = sorted({_match_actor(a, every) for a in actors}, key=_actor_key)
    else:
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must lie between 0 and 1; got {fraction!r}")
        chosen = []
        for group in by_gender.values():
            n = min(max(math.floor(fraction * len(group) + 0.5), 1), len(group) - 1)
            chosen += group[len(group) - n :]
        chosen = sorted(chosen, key=_actor_key)
        if not chosen:
            raise ValueError(
                f"no actor can be held out for validation: each gender has one actor "
                f"({dict((g, a) for g, a in by_gender.items())}); give validation actors or "
                "train on every actor"
            )
    for gender, group in by_gender.items():
        if set(group) <= set(chosen):
            raise ValueError(
                f"validation actors {chosen} leave no {gender} actor for training "
                f"({gender} actors: {group})"
            )
    return chosen


def _actor_key(actor: str):
    return (0, int(actor), actor) if actor.isdigit() else (1, 0, actor)


def _match_actor(actor, every: Sequence[str]) -> str:
    actor = str(actor).strip()
    if actor in every:
        return actor
    same = [a for a in every if actor.isdigit() and a.isdigit() and int(a) == int(actor)]
    if len(same) == 1:
        return same[0]
    raise ValueError(f"validation actor {actor!r} is not an actor of the corpus (actors: {every})")


def corpus_validation(
    table,
    regimes: Sequence[str],
    validation_actors: Sequence[str],
    *,
    identity_sentence: str | None = None,
) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """The validation column of each regime and the values held out, for
    :func:`dnnrsa.train.train_regimes`.

    Every regime is validated on the actors of ``validation_actors`` (column
    ``actor``), except identity (and ``actor``): an unseen actor would be an unseen
    class, so it trains on every actor and is validated on one held-out sentence
    (column ``sentence``). With a single sentence in the table it trains on every
    clip instead, with a warning.

    Parameters
    ----------
    table : pandas.DataFrame
        A labels table of :func:`read_corpus`.
    regimes : sequence of str
    validation_actors : sequence of str
        From :func:`actor_split`.
    identity_sentence : str, optional
        The sentence held out for identity (default: the last in sorted order: RAVDESS
        ``kids``, CREMA-D ``WSI``).

    Returns
    -------
    columns : dict of str to str or None
        Each regime's validation column.
    values : dict of str to list of str
        Each validation column's held-out values.
    """
    sentences = sorted(table["sentence"].unique())
    if identity_sentence is not None and identity_sentence not in sentences:
        raise ValueError(
            f"identity_sentence {identity_sentence!r} is not a sentence of the table "
            f"(sentences: {sentences})"
        )
    columns: dict[str, str | None] = {}
    values: dict[str, list[str]] = {}
    for regime in regimes:
        if regime in ACTOR_REGIMES:
            if len(sentences) < 2:
                logger.warning(
                    "%s cannot be validated on a held-out sentence (one sentence, %s): it "
                    "trains on every clip",
                    regime,
                    sentences,
                )
                columns[regime] = None
                continue
            columns[regime] = "sentence"
            values["sentence"] = [identity_sentence or sentences[-1]]
        else:
            columns[regime] = "actor"
            values["actor"] = [str(a) for a in validation_actors]
    return columns, values


def write_corpus_labels(table, path: str | os.PathLike) -> Path:
    """Write a labels table as TSV (atomically), readable by :func:`dnnrsa.train.read_labels`."""
    from ._io import atomic_write

    path = Path(path)
    with atomic_write(path) as fh:
        table.to_csv(fh, sep="\t", index=False)
    return path


def describe_split(
    table, columns: Mapping[str, str | None], values: Mapping[str, Sequence[str]]
) -> list[str]:
    """One line per regime: its validation column, the values held out and the counts."""
    lines = []
    for regime, column in columns.items():
        if column is None:
            lines.append(f"{regime}: every clip trains ({len(table)})")
            continue
        held = table[column].isin(values[column])
        lines.append(
            f"{regime}: validated on {column} {', '.join(values[column])} "
            f"({int(held.sum())} clips; {int((~held).sum())} train)"
        )
    return lines
