"""Prose written for the test suite: encyclopedia-style passages about invented places, people and
things, with questions about them. Tests that need realistic multi-passage prompts take them from
here, so the suite reads nothing outside the repository. The passages are long enough (120-170
words, ~170-230 tokens each) to be cut to any shorter length a test wants."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


PASSAGES: tuple[Passage, ...] = (
    Passage(
        "Harrowgate Bridge",
        "Harrowgate Bridge is a stone arch bridge over the river Elsk in the market town of Dunmere. "
        "It was begun in 1732 by the mason Tobias Kettleby after a timber crossing was carried away by "
        "the great flood of the previous winter, and it opened to carts four years later. The bridge "
        "has five elliptical arches of local sandstone, the widest spanning twenty-one metres, and a "
        "narrow footway on its downstream side that was added in 1868. Tolls were collected at a small "
        "octagonal house on the northern bank until 1902, when the county council bought the bridge "
        "from its trustees. The toll house now holds a museum of river trade, and the bridge was "
        "closed to motor traffic in 1994 after cracks were found in the central pier.",
    ),
    Passage(
        "Tobias Kettleby",
        "Tobias Kettleby (1698-1771) was a mason and bridge builder from the hill village of Carrow "
        "Fell. He trained under his uncle, a quarryman, and first became known for repairing church "
        "towers damaged by lightning. His largest work is Harrowgate Bridge at Dunmere, but he also "
        "built the mill weir at Ostley and three smaller bridges on the Carrow road. Kettleby kept "
        "notebooks of his calculations, which show that he tested the strength of each batch of "
        "mortar by loading small sample arches with sacks of sand until they failed. He married "
        "Hester Pryde in 1725; their son Amos continued the business and later designed the "
        "customs house at Saltby harbour. Kettleby is buried in the churchyard at Carrow Fell.",
    ),
    Passage(
        "Dunmere",
        "Dunmere is a market town on the river Elsk, about forty kilometres upstream from the port "
        "of Saltby. It grew around a weekly wool market that was granted a royal charter in 1281, "
        "and its broad main street still widens into a triangle where the sheep pens once stood. "
        "The town's population was 11,400 at the last census. Its best-known buildings are "
        "Harrowgate Bridge, the church of Saint Oda with its crooked spire, and the corn exchange, "
        "now a theatre. Dunmere holds a lantern festival every November, when boats carrying paper "
        "lanterns are floated under the bridge at dusk. The railway reached the town in 1859 and "
        "the station remains open on the line to Saltby.",
    ),
    Passage(
        "Saltby",
        "Saltby is a harbour town at the mouth of the river Elsk. For two centuries it was the main "
        "port for wool, slate and salted herring from the valley, and its customs house, designed "
        "by Amos Kettleby and finished in 1779, still stands on the quay. The harbour is protected "
        "by a curved breakwater built between 1840 and 1851, which shelters about three hundred "
        "moorings. Commercial fishing declined after 1960, and the town now depends on tourism, "
        "boat repair and a ferry that crosses to the island of Maddock twice a day in summer. "
        "Saltby's lifeboat station, founded in 1826, is one of the oldest on the coast, and its "
        "crews have been awarded eleven medals for gallantry.",
    ),
    Passage(
        "Maddock Island",
        "Maddock is a low island of about nine square kilometres lying twelve kilometres off Saltby. "
        "It has no trees, and its grassland is grazed by a hardy breed of brown sheep found nowhere "
        "else. About sixty people live there all year, most of them in the single village of "
        "Penhallow, which has a school with seven pupils, a shop and a chapel. A lighthouse on the "
        "western cliffs was lit in 1874 and made automatic in 1989. The island's cliffs hold one of "
        "the largest colonies of puffins in the region, and bird counts have been made there every "
        "June since 1952. Visitors arrive on the summer ferry from Saltby; in winter the island is "
        "supplied by a weekly boat when the weather allows.",
    ),
    Passage(
        "Vellmark telescope",
        "The Vellmark telescope is a reflecting telescope with a mirror 2.4 metres across, on the "
        "summit of Mount Orrin at an altitude of 2,960 metres. It was completed in 1981 by a "
        "consortium of four universities and was for a time the largest optical telescope in its "
        "hemisphere. The mirror was cast in a single piece of low-expansion glass and took three "
        "years to grind and polish. Astronomers at Vellmark discovered the first brown dwarf in the "
        "Tessel cluster in 1995 and measured the rotation of more than four hundred distant "
        "galaxies. The site was chosen for its dry air and steady seeing; on average the sky is "
        "clear on 260 nights a year. A second, smaller telescope for training students opened "
        "beside it in 2008.",
    ),
    Passage(
        "Mount Orrin",
        "Mount Orrin is an extinct volcano rising to 3,105 metres, the highest point of the Sarn "
        "range. Its last eruption is thought to have happened about forty thousand years ago, and "
        "its summit crater is now filled with a small lake that freezes for eight months of the "
        "year. A paved road, built in the 1970s to serve the Vellmark observatory, climbs the "
        "southern slopes in thirty-one hairpin bends and is closed to the public at night so that "
        "headlights do not disturb the telescopes. The lower forests of pine and juniper are home "
        "to a rare grey woodpecker. The first recorded ascent was made in 1823 by the surveyor Ilse "
        "Brandt, who measured the height of the mountain with a barometer.",
    ),
    Passage(
        "Ilse Brandt",
        "Ilse Brandt (1791-1860) was a surveyor and map maker who led the first full survey of the "
        "Sarn range. Born in a family of clockmakers, she learned to build and repair instruments "
        "as a child and later designed a portable barometer that could be carried up mountains "
        "without losing its mercury. Between 1819 and 1834 she mapped more than six thousand "
        "square kilometres, working from a network of triangulation stations that she marked with "
        "iron pins, many of which can still be found. Her maps were the first to show the true "
        "course of the upper river Elsk. She made the first recorded ascent of Mount Orrin in 1823. "
        "A glacier on the range's northern side is named after her.",
    ),
    Passage(
        "Pellam Observatory",
        "Pellam Observatory was founded in 1862 on a hill outside the city of Corvin by the "
        "merchant Edwin Pellam, who wanted the city's schools to have a place to study the sky. "
        "Its first instrument was a refracting telescope with a lens twenty-five centimetres "
        "across, still in use for public evenings. The observatory kept the official time for the "
        "city from 1870 to 1935, dropping a painted ball from a mast on its roof at noon each day "
        "so that ships in the harbour could set their clocks. Light from the growing city made "
        "serious research difficult after the 1950s, and the observatory now serves as a museum "
        "and a teaching centre, visited by about thirty thousand people a year.",
    ),
    Passage(
        "Corvin",
        "Corvin is a port city on a wide bay, with a population of about 640,000. It was founded as "
        "a fishing settlement and became a city after a canal linking the bay to the inland lakes "
        "was opened in 1811. The old town stands on a rocky headland and is surrounded by walls "
        "that were pulled down in part to make room for the railway in 1858. Corvin's economy rests "
        "on shipping, shipbuilding and, more recently, software companies that have settled in the "
        "former warehouses along the canal. Its university, founded in 1904, is known for marine "
        "biology. The city's tram network, opened in 1896, is one of the oldest still running.",
    ),
    Passage(
        "Corvin canal",
        "The Corvin canal runs for eighty-four kilometres from the bay at Corvin to Lake Tamsa. It "
        "was dug between 1796 and 1811 by about four thousand labourers and climbs one hundred and "
        "twelve metres through thirty-eight locks. The chief engineer was Magnus Ferreby, who also "
        "designed a steam pump to lift water to the highest section during dry summers. For fifty "
        "years the canal carried timber, grain and iron ore to the coast, until the railway took "
        "most of its trade. It was restored for pleasure boats in the 1980s, and a towpath along "
        "its whole length is now a popular cycle route. Its flight of nine locks at Harl is a "
        "protected monument.",
    ),
    Passage(
        "Magnus Ferreby",
        "Magnus Ferreby (1760-1829) was a civil engineer best known as the chief engineer of the "
        "Corvin canal. He began his career draining marshes on the coast and became an expert on "
        "the movement of water through soil. On the canal he introduced clay linings that cut "
        "leakage by more than half and a system of side ponds that saved water at each lock. His "
        "steam pump at Tamsa, installed in 1809, was one of the first of its kind inland. Ferreby "
        "later advised on harbour works at Saltby and wrote a two-volume treatise on canals that "
        "was translated into three languages. He died at Corvin and is commemorated by a statue "
        "at the top lock.",
    ),
    Passage(
        "Lake Tamsa",
        "Lake Tamsa is a freshwater lake of about 210 square kilometres and the largest of the "
        "inland lakes east of Corvin. Its greatest depth is sixty-seven metres. Three rivers feed "
        "it, and its only outlet is the river Vos, whose flow has been controlled by a weir since "
        "the Corvin canal was built. The lake freezes in most winters, and from 1890 to 1939 an "
        "ice road across it was used by sledges carrying timber. Its waters hold a species of "
        "small silver trout found in no other lake. The town of Tamsa on the western shore grew "
        "around the canal's upper basin and has a museum of canal boats and a boatyard that still "
        "builds wooden barges to the old pattern.",
    ),
    Passage(
        "Brown Maddock sheep",
        "The Brown Maddock is a small breed of sheep kept on Maddock Island. Adults weigh about "
        "thirty kilograms, and both rams and ewes carry short curved horns. Their fleece is a deep "
        "chocolate brown that fades towards grey with age, and it is prized by hand spinners for "
        "its softness. The breed is thought to descend from sheep left on the island by fishermen "
        "several hundred years ago, and it has adapted to grazing salt-sprayed grass and seaweed "
        "on the shore in winter. A herd book was opened in 1976, when fewer than two hundred "
        "animals remained; careful breeding has since raised the flock to about nine hundred. A "
        "small number are kept on farms near Saltby as a reserve.",
    ),
    Passage(
        "Lantern festival of Dunmere",
        "The lantern festival of Dunmere takes place on the second Saturday of November. Its origin "
        "is said to be a vigil held in 1737 for the workers who had died building Harrowgate "
        "Bridge, when candles were set afloat on the river. The modern festival began in 1950. "
        "Families make lanterns of paper and willow in the weeks before, and at dusk several "
        "hundred small boats carrying them are released upstream and drift under the five arches. "
        "A brass band plays on the bridge, and the evening ends with a procession to the market "
        "triangle. The festival now draws about twenty thousand visitors, and a prize is given "
        "for the best lantern made by a child.",
    ),
)


@dataclass(frozen=True)
class Example:
    """A question, the passage that answers it and the answer, like one row of a QA data set."""

    question: str
    answer: str
    gold: int  # index into PASSAGES


EXAMPLES: tuple[Example, ...] = (
    Example("Who built Harrowgate Bridge?", "Tobias Kettleby", 0),
    Example("Where is Tobias Kettleby buried?", "Carrow Fell", 1),
    Example("When did the railway reach Dunmere?", "1859", 2),
    Example("Who designed the customs house at Saltby?", "Amos Kettleby", 3),
    Example("When was the lighthouse on Maddock Island lit?", "1874", 4),
    Example("How wide is the mirror of the Vellmark telescope?", "2.4 metres", 5),
    Example("Who made the first recorded ascent of Mount Orrin?", "Ilse Brandt", 6),
    Example("What did Ilse Brandt design?", "a portable barometer", 7),
    Example("Who founded Pellam Observatory?", "Edwin Pellam", 8),
    Example("When was the University of Corvin founded?", "1904", 9),
    Example("How many locks does the Corvin canal have?", "thirty-eight", 10),
    Example("Where did Magnus Ferreby install a steam pump?", "Tamsa", 11),
    Example("What is the only outlet of Lake Tamsa?", "the river Vos", 12),
    Example("How much does an adult Brown Maddock sheep weigh?", "about thirty kilograms", 13),
    Example("When does the lantern festival of Dunmere take place?", "the second Saturday of November", 14),
)


def passages_for(example: int, count: int) -> list[Passage]:
    """The gold passage of `example` first, then the next ones in order (related topics sit side by
    side in PASSAGES, so the others are plausible distractors)."""
    if not 1 <= count <= len(PASSAGES):
        raise ValueError(f"count must be 1..{len(PASSAGES)}, got {count}")
    start = EXAMPLES[example % len(EXAMPLES)].gold
    return [PASSAGES[(start + i) % len(PASSAGES)] for i in range(count)]


def rag_docs(example: int, count: int, words: int | None = None) -> tuple[str, list[str]]:
    """A question and `count` passages ("Title. text"), each cut to its first `words` words."""
    docs = [f"{p.title}. {p.text}" for p in passages_for(example, count)]
    if words is not None:
        docs = [" ".join(d.split()[:words]) for d in docs]
    return EXAMPLES[example % len(EXAMPLES)].question, docs


def musique_like(count: int, passages: int) -> list[dict[str, Any]]:
    """Rows in the layout of the MuSiQue files the benchmarks read (question, answers, ctxs)."""
    return [
        {
            "id": f"suite-{i}",
            "question": EXAMPLES[i].question,
            "answers": [EXAMPLES[i].answer],
            "ctxs": [
                {"title": p.title, "text": p.text, "is_supporting": j == 0}
                for j, p in enumerate(passages_for(i, passages))
            ],
        }
        for i in range(count)
    ]


def squad_like() -> dict[str, Any]:
    """The passages as one SQuAD 2.0 article each, with one answerable and one unanswerable question."""
    data = []
    for i, ex in enumerate(EXAMPLES):
        passage = PASSAGES[ex.gold]
        start = passage.text.find(ex.answer)
        qas = [
            {
                "id": f"suite-{i}",
                "question": ex.question,
                "is_impossible": False,
                "answers": [{"text": ex.answer, "answer_start": start}],
            },
            {
                "id": f"suite-{i}-x",
                "question": f"Who painted {passage.title}?",
                "is_impossible": True,
                "answers": [],
            },
        ]
        data.append({"title": passage.title, "paragraphs": [{"context": passage.text, "qas": qas}]})
    return {"version": "v2.0", "data": data}


def write_data_dir(path: Path) -> Path:
    """A data folder in the benchmarks' layout, built from these texts, for tests that run them."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "musique_dev.json").write_text(json.dumps(musique_like(len(EXAMPLES), 5)))
    (path / "squad_v2_dev_subset.json").write_text(json.dumps(squad_like()))
    return path
