"""Feast objects of the Seattle models (a user's project kept in tests/own_model/).

Both models (`seattle-weather`: the day's maximum temperature; `seattle-sky`: the day's weather)
join the same city facts; each has its own label rows and feature service.

Event-time conventions: day D is predicted at D 00:00 UTC with the day's readings in the
request, so its label row is timestamped then. The data files under `data/` are written by
`tests/own_model/data.py` when a test copies this project; nothing of the data set is kept in
the repository.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

city = Entity(
    name="city",
    join_keys=["city_id"],
    value_type=ValueType.STRING,
    description="A city with a weather station; the data set has one, Seattle (`seattle`).",
)

city_facts_source = FileSource(
    name="city_facts_file",
    path="data/city_facts.parquet",
    timestamp_field="event_timestamp",
    description="Static facts of each city, one row per city.",
)

city_facts = FeatureView(
    name="city_facts",
    entities=[city],
    # The facts do not change: one row must serve every day of the data set (2012-2015).
    ttl=timedelta(days=3650),
    schema=[
        Field(name="latitude", dtype=Float64, description="Latitude of the city (degrees north).")
    ],
    source=city_facts_source,
    online=True,
    tags={"models": "seattle-weather,seattle-sky"},
)

seattle_weather_labels = FileSource(
    name="seattle_weather_labels",
    path="data/seattle_weather_labels.parquet",
    timestamp_field="event_timestamp",
    description=(
        "Historical label rows of the first training only: one per day, with the request fields "
        "(month, precipitation, temp_min, wind) and the target `temp_max`."
    ),
)

seattle_weather_v1 = FeatureService(
    name="seattle_weather_v1",
    features=[city_facts],
    description="Features of the seattle-weather model; the day's readings come with the request.",
    tags={
        "loopstack.label_source": "seattle_weather_labels",
        "loopstack.model": "seattle-weather",
    },
)

seattle_sky_labels = FileSource(
    name="seattle_sky_labels",
    path="data/seattle_sky_labels.parquet",
    timestamp_field="event_timestamp",
    description=(
        "Historical label rows of the first training only: one per day, with the request fields "
        "(month, precipitation, temp_max, temp_min, wind) and the target `weather` (drizzle, "
        "rain, sun, snow or fog)."
    ),
)

seattle_sky_v1 = FeatureService(
    name="seattle_sky_v1",
    features=[city_facts],
    description="Features of the seattle-sky model; the day's readings come with the request.",
    tags={"loopstack.label_source": "seattle_sky_labels", "loopstack.model": "seattle-sky"},
)
