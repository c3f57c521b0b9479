"""Decodes labstream's Kafka records of the Sample schema with fastavro, as an
independent reader for the tests: each line of the input file is one record's bytes in
hex (single-object encoding: C3 01, the schema's CRC-64-AVRO fingerprint, little
endian, then the body); the header and fingerprint are checked, and each output line
is the sample as JSON, every value tagged by the union branch it was written as.
    python avro_samples.py <sample.avsc> <records.hex>"""
import datetime
import json
import io
import sys

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

schema = fastavro.parse_schema(json.load(open(sys.argv[1])))
expected = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def micros(t):
    return (t - epoch) // datetime.timedelta(microseconds=1)


def branch(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "long"
    if isinstance(v, float):
        return "double"
    return "string"


for line in open(sys.argv[2]):
    if not line.strip():
        continue
    data = bytes.fromhex(line.strip())
    assert data[:2] == b"\xc3\x01", "not single-object encoded"
    assert data[2:10] == expected, f"fingerprint {data[2:10].hex()} is not the schema's {expected.hex()}"
    r = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
    print(json.dumps({
        "sensor_id": r["sensor_id"],
        "sensor_type": r["sensor_type"],
        "ts": micros(r["ts"]),
        "seq": r["seq"],
        "values": {k: [branch(v), v] for k, v in sorted(r["values"].items())},
        "tags": dict(sorted(r["tags"].items())),
    }, sort_keys=True))
