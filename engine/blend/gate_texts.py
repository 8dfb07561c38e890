"""Short prompts shipped with the package for the blend correctness gate (engine/blend/gate.py).

Written for this purpose (not evaluation data): several passages, only some of which answer the
question, so the answer depends on text from chunks whose caches were computed elsewhere.
"""

from __future__ import annotations

GATE_PROMPTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Which river flows past the town where the lighthouse keeper was born?",
        (
            "Harbour Point Lighthouse\nThe lighthouse on Harbour Point was built in 1871 from granite "
            "quarried inland. Its last keeper, Tomas Verlund, served for thirty-one years before the "
            "lamp was automated. Verlund was born in the market town of Oskby, some forty kilometres "
            "north of the coast, and moved to the point as a young man.",
            "Oskby\nOskby is a market town known for its Saturday wool fair and its stone bridge. The "
            "town grew along the west bank of the river Alvra, which carried timber to the sea until "
            "the railway arrived. Today about nine thousand people live there.",
            "Coastal weather\nThe coast north of Harbour Point sees strong westerly winds in winter. "
            "Fishing boats keep to the sheltered bays between November and February, and storms of "
            "more than ninety kilometres an hour are recorded most years.",
            "The river Tessen\nThe Tessen rises in the eastern hills and joins the sea at Marrow Bay. "
            "Its lower valley is farmed for barley and potatoes, and a ferry still crosses it at the "
            "village of Lund during the summer months.",
        ),
    ),
    (
        "In what year did the composer of the Harvest Suite first perform in the capital?",
        (
            "The Harvest Suite\nThe Harvest Suite is a set of five orchestral dances written by Ilse "
            "Marant in 1934. Each dance takes its tune from a folk song of the valley where she grew "
            "up. The suite was first recorded in 1950 by the city's radio orchestra.",
            "Ilse Marant\nIlse Marant was a pianist before she was a composer. After years of playing "
            "in provincial halls, she gave her first concert in the capital in 1928, a programme of "
            "sonatas that critics praised for its clarity. She taught at the conservatory until 1961.",
            "The conservatory\nThe conservatory moved to its present building on Linden Square in "
            "1905. It trains about four hundred students a year in performance, composition and "
            "conducting, and its library holds many of the country's oldest printed scores.",
            "Folk song collecting\nIn the early twentieth century collectors travelled the valleys "
            "with wax-cylinder phonographs. Thousands of songs were written down, and many later "
            "appeared in arrangements for choir and orchestra.",
        ),
    ),
    (
        "What colour is the flag of the island whose harbour the ferry from Brenna reaches first?",
        (
            "Ferries from Brenna\nThe morning ferry leaves Brenna at seven. It calls first at the "
            "harbour of Skarr, then at Holm, and returns by the evening. In winter only two crossings "
            "a week run, and they are cancelled when the swell is high.",
            "Holm\nHolm is the larger of the two outer islands. Its flag is white with a blue cross, "
            "and its harbour was deepened in 1988 so that cargo ships could dock. Most of its people "
            "work in fish processing.",
            "Skarr\nSkarr is a small, rocky island with about three hundred residents. Its flag is a "
            "plain green field with a yellow star in the upper corner, adopted when the island gained "
            "its own council. Puffins nest on its western cliffs.",
            "Island economies\nThe outer islands depend on fishing, tourism and payments from the "
            "mainland. Young people often leave for the city, and schools on the smallest islands "
            "have closed in recent decades.",
        ),
    ),
)
