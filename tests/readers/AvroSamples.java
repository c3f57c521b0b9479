// Decodes labstream's Kafka records of the Sample schema with Apache Avro, the
// reference implementation, as an independent reader for the tests: each line of the
// input file is one record's bytes in hex (single-object encoding: C3 01, the schema's
// CRC-64-AVRO fingerprint, the body); each output line is the sample as JSON, with every
// value tagged by the union branch it was written as.
//   java -cp '<javatools lib>/*' AvroSamples.java <sample.avsc> <records.hex>

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;

public class AvroSamples {
    public static void main(String[] args) throws Exception {
        Schema schema = new Schema.Parser().parse(Path.of(args[0]).toFile());
        // Checks the header and the fingerprint, as any single-object reader must.
        BinaryMessageDecoder<GenericRecord> decoder =
            new BinaryMessageDecoder<>(GenericData.get(), schema);
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            if (line.isBlank()) continue;
            GenericRecord r = decoder.decode(hex(line.trim()));
            StringBuilder out = new StringBuilder("{");
            out.append("\"sensor_id\":").append(str(r.get("sensor_id")));
            out.append(",\"sensor_type\":").append(str(r.get("sensor_type")));
            out.append(",\"ts\":").append(r.get("ts"));
            out.append(",\"seq\":").append(r.get("seq") == null ? "null" : r.get("seq").toString());
            out.append(",\"values\":{");
            String sep = "";
            for (Map.Entry<String, Object> e : sorted(r.get("values")).entrySet()) {
                Object v = e.getValue();
                String branch = v instanceof Double ? "double" : v instanceof Long ? "long"
                    : v instanceof Boolean ? "boolean" : "string";
                String value = v instanceof CharSequence ? str(v) : v.toString();
                out.append(sep).append(str(e.getKey())).append(":[\"").append(branch)
                    .append("\",").append(value).append("]");
                sep = ",";
            }
            out.append("},\"tags\":{");
            sep = "";
            for (Map.Entry<String, Object> e : sorted(r.get("tags")).entrySet()) {
                out.append(sep).append(str(e.getKey())).append(":").append(str(e.getValue()));
                sep = ",";
            }
            out.append("}}");
            System.out.println(out);
        }
    }

    static Map<String, Object> sorted(Object map) {
        Map<String, Object> out = new TreeMap<>();
        for (Map.Entry<?, ?> e : ((Map<?, ?>) map).entrySet()) {
            out.put(e.getKey().toString(), e.getValue());
        }
        return out;
    }

    static String str(Object o) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : o.toString().toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\');
            b.append(c);
        }
        return b.append('"').toString();
    }

    static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
