"""Feast objects of the bike-demand model (Capital Bikeshare, Washington DC, 2011, hourly).

Event-time conventions (see data/README.md): an hour H is [H, H+1h); the prediction for it is
made at H, so label rows are timestamped H. A lag row is timestamped T, the moment all its
values are known: the count of hour H-1 becomes available at H, so `bikers_last_hour` at T
is the count of hour T-1h. A point-in-time join at H therefore never reaches the count of H.

The files hold January-February 2011, the first model's history; later label and lag rows reach
the offline store only as feedback (outcomes of served requests). The rest of the year is the
demo's replay file, which no source here reads.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64

city = Entity(
    name="city",
    join_keys=["city_id"],
    value_type=ValueType.STRING,
    description="A bike-share city; the data has one, Washington DC (`dc`).",
)

bike_demand_labels = FileSource(
    name="bike_demand_labels",
    path="data/bike_demand_labels.parquet",
    timestamp_field="event_timestamp",
    description=(
        "Label rows: one per observed hour, timestamped at the hour's start (prediction time), "
        "with the request-time context (weather, calendar) and the target `bikers`, known at "
        "`label_timestamp` = start + 1h. The file holds Jan-Feb 2011; fed-back outcomes add "
        "the rest."
    ),
)

city_demand_lags_source = FileSource(
    name="city_demand_lags_file",
    path="data/bike_demand_lags.parquet",
    timestamp_field="event_timestamp",
    description="Hourly lag rows, timestamped when their values become available.",
)

# Fresh outcomes are pushed here (to the online store, and offline later) by the loop.
city_demand_push = PushSource(name="city_demand_push", batch_source=city_demand_lags_source)

city_demand_lags = FeatureView(
    name="city_demand_lags",
    entities=[city],
    # A row is written every hour; older than 2h means the feed is stale, and a stale
    # "last hour" count is wrong rather than approximately right: treat it as missing.
    ttl=timedelta(hours=2),
    schema=[
        Field(
            name="bikers_last_hour",
            dtype=Int64,
            description="Count of hour T-1h (missing if that hour is missing).",
        ),
        Field(
            name="bikers_same_hour_yesterday",
            dtype=Int64,
            description="Count of hour T-24h (missing if that hour is missing).",
        ),
        Field(
            name="bikers_mean_7d",
            dtype=Float64,
            description="Mean hourly count over observed hours in [T-168h, T-1h] (>= 24 hours).",
        ),
    ],
    source=city_demand_push,
    online=True,
    tags={"model": "bike-demand"},
)

bike_demand_v1 = FeatureService(
    name="bike_demand_v1",
    features=[city_demand_lags],
    description="Features of the bike-demand model; context fields come with the request.",
    tags={"loopstack.label_source": "bike_demand_labels", "loopstack.model": "bike-demand"},
)
