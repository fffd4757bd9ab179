"""Feast objects of the credit-default model (ISLP `Default`, 10,000 simulated customers).

Each customer has one seeded event time, uniform over 2011 (see data/README.md): the account
snapshot (student, balance, income) is taken then, and the prediction is made then.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A credit-card customer (0..9999).",
)

credit_default_labels = FileSource(
    name="credit_default_labels",
    path="data/credit_default_labels.parquet",
    timestamp_field="event_timestamp",
    description="Label rows: customer, prediction time and target `default` (0/1).",
)

credit_customers_source = FileSource(
    name="credit_customers_file",
    path="data/credit_customers.parquet",
    timestamp_field="event_timestamp",
    description="Account snapshots, timestamped when they were taken.",
)

customer_credit = FeatureView(
    name="customer_credit",
    entities=[customer],
    # A snapshot is the account as last seen and stays valid until the next one: no expiry
    # (0, as in Feast). Serving judges rows against the TTL at request time, and a live request
    # today for a 2011 snapshot must still be answered.
    ttl=timedelta(0),
    schema=[
        Field(name="student", dtype=String, description="Yes/No; also the quality segment."),
        Field(name="balance", dtype=Float64, description="Average card balance (USD)."),
        Field(
            name="income",
            dtype=Float64,
            description="Annual income (USD); sensitive.",
            tags={"sensitive": "true"},
        ),
    ],
    source=credit_customers_source,
    online=True,
    tags={"model": "credit-default"},
)

credit_default_v1 = FeatureService(
    name="credit_default_v1",
    features=[customer_credit],
    description="Features of the credit-default model.",
    tags={"loopstack.label_source": "credit_default_labels", "loopstack.model": "credit-default"},
)
