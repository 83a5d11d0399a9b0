"""The 14 SemEval-2020 Task 11 techniques, and how the SemEval-2021 meme labels map onto them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Technique:
    name: str  # the official SemEval-2020 spelling, as in the gold label files
    definition: str
    example: str


TECHNIQUE_INFO: tuple[Technique, ...] = (
    Technique(
        "Appeal_to_Authority",
        "Presents a claim as true because an authority or expert is said to back it, not because of evidence.",
        "Leading scientists agree this is the only way forward.",
    ),
    Technique(
        "Appeal_to_fear-prejudice",
        "Builds support for an idea by stirring anxiety, panic or prejudice about the alternative.",
        "If we do nothing, they will flood our towns.",
    ),
    Technique(
        "Bandwagon,Reductio_ad_hitlerum",
        "Urges agreement because everyone else agrees, or rejects an idea because a hated group is said to hold it.",
        "Millions have already joined; Hitler was a vegetarian too.",
    ),
    Technique(
        "Black-and-White_Fallacy",
        "Offers two options as the only ones possible when more exist.",
        "You are either with us or against us.",
    ),
    Technique(
        "Causal_Oversimplification",
        "Blames a complex outcome on a single cause.",
        "Crime went up because of the new mayor.",
    ),
    Technique(
        "Doubt",
        "Questions the credibility of a person or institution without substantiating the charge.",
        "Can we really trust anything this agency says?",
    ),
    Technique(
        "Exaggeration,Minimisation",
        "Makes something look far bigger, better or worse than it is, or plays it down.",
        "The greatest disaster in the history of the world.",
    ),
    Technique(
        "Flag-Waving",
        "Plays on patriotism or group identity to justify an idea or action.",
        "Real Americans stand by their troops.",
    ),
    Technique(
        "Loaded_Language",
        "Uses words with strong emotional connotations to sway the reader.",
        "a brutal, shameful betrayal",
    ),
    Technique(
        "Name_Calling,Labeling",
        "Attaches a label the audience fears, hates or admires to the object of the argument.",
        "the radical globalist elite",
    ),
    Technique(
        "Repetition",
        "Repeats the same message over and over so that the audience comes to accept it.",
        "Build the wall. We will build the wall.",
    ),
    Technique(
        "Slogans",
        "A brief, striking phrase, often a label or stereotype, used as a rallying cry.",
        "Make our country great again!",
    ),
    Technique(
        "Thought-terminating_Cliches",
        "A stock phrase that discourages critical thought and ends the discussion.",
        "It is what it is.",
    ),
    Technique(
        "Whataboutism,Straw_Men,Red_Herring",
        "Deflects criticism by pointing at the opponent's faults, distorting their position, or changing the subject.",
        "And what about the scandal in their own party?",
    ),
)

TECHNIQUES: tuple[str, ...] = tuple(technique.name for technique in TECHNIQUE_INFO)
TECHNIQUE_BY_NAME: dict[str, Technique] = {technique.name: technique for technique in TECHNIQUE_INFO}

# SemEval-2021 Task 6 meme labels onto the 14 news classes. None marks a meme label with no
# counterpart: PTC merged or dropped those classes, so predicting them is out of our scope.
MEME_TO_PTC: dict[str, str | None] = {
    "Appeal to authority": "Appeal_to_Authority",
    "Appeal to fear/prejudice": "Appeal_to_fear-prejudice",
    "Bandwagon": "Bandwagon,Reductio_ad_hitlerum",
    "Reductio ad hitlerum": "Bandwagon,Reductio_ad_hitlerum",
    "Black-and-white Fallacy/Dictatorship": "Black-and-White_Fallacy",
    "Causal Oversimplification": "Causal_Oversimplification",
    "Doubt": "Doubt",
    "Exaggeration/Minimisation": "Exaggeration,Minimisation",
    "Flag-waving": "Flag-Waving",
    "Loaded Language": "Loaded_Language",
    "Name calling/Labeling": "Name_Calling,Labeling",
    "Repetition": "Repetition",
    "Slogans": "Slogans",
    "Thought-terminating cliché": "Thought-terminating_Cliches",
    "Whataboutism": "Whataboutism,Straw_Men,Red_Herring",
    "Misrepresentation of Someone's Position (Straw Man)": "Whataboutism,Straw_Men,Red_Herring",
    "Presenting Irrelevant Data (Red Herring)": "Whataboutism,Straw_Men,Red_Herring",
    # No PTC counterpart: PTC dropped Obfuscation (11 cases), and never annotated the other two.
    "Glittering generalities (Virtue)": None,
    "Obfuscation, Intentional vagueness, Confusion": None,
    "Smears": None,
}


def check_technique(name: str) -> str:
    """Return `name` if it is one of the 14 techniques, else raise a ValueError naming the valid ones."""
    if name not in TECHNIQUE_BY_NAME:
        raise ValueError(f"unknown technique {name!r}; expected one of: {', '.join(TECHNIQUES)}")
    return name
