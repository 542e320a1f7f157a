"""A deterministic corpus of short company reports for the demo and the benchmarks.

Every document names people, companies and cities from fixed lists, so LightRAG (even
with the offline stand-ins) finds entities and relations that recur across documents.
"""

from __future__ import annotations

PEOPLE = (
    "Alice Johnson",
    "Bob Smith",
    "Carol White",
    "Dana Lee",
    "Evan Brown",
    "Fiona Green",
    "George Hall",
    "Hannah Young",
    "Ivan Petrov",
    "Julia Roberts",
    "Kevin Moore",
    "Laura Chen",
)
COMPANIES = (
    "Acme Robotics",
    "Globex Corporation",
    "Initech Systems",
    "Umbrella Logistics",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli Analytics",
    "Vandelay Imports",
)
CITIES = ("Berlin", "Paris", "Austin", "Tokyo", "Toronto", "Madrid", "Oslo", "Seoul")
TOPICS = (
    "warehouse robots",
    "fleet software",
    "battery recycling",
    "supply chain audits",
    "sensor networks",
    "route planning",
    "quality control",
    "customer support",
)


def document(i: int) -> tuple[str, str]:
    """(text, file path) of document ``i``; the same for the same ``i``, always."""
    person, partner = PEOPLE[i % len(PEOPLE)], PEOPLE[(i * 7 + 3) % len(PEOPLE)]
    company, other = COMPANIES[i % len(COMPANIES)], COMPANIES[(i * 3 + 1) % len(COMPANIES)]
    city, topic = CITIES[(i * 5) % len(CITIES)], TOPICS[(i * 11) % len(TOPICS)]
    text = (
        f"Report {i}: {person} leads the {topic} programme at {company} in {city}. "
        f"{company} works with {other} on {topic}, and {partner} reviews the results "
        f"every quarter. {other} plans to open an office in {city} next year."
    )
    return text, f"reports/{company.split()[0].lower()}/report_{i:04d}.txt"


def documents(count: int, start: int = 0) -> list[tuple[str, str]]:
    return [document(i) for i in range(start, start + count)]
