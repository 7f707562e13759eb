#!/usr/bin/env python3
"""The bench's schema registry: serves an Avro schema as id 1 and a Protobuf schema as id 2, the
way a Confluent Schema Registry answers `GET /schemas/ids/{id}`, and `GET /subjects` with one
subject. No registry server installs here; frazil's own tests check its client against the
documented answers in detail.

    registry.py AVRO_FILE PORT_FILE [PROTO_FILE]  # writes the port it listens on to PORT_FILE, then serves
"""
import http.server
import json
import sys


def main():
    schema_file, port_file = sys.argv[1], sys.argv[2]
    with open(schema_file) as f:
        answers = {"/schemas/ids/1": {"schema": f.read().strip()}}
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            answers["/schemas/ids/2"] = {"schemaType": "PROTOBUF", "schema": f.read(), "references": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path in answers:
                body, code = answers[self.path], 200
            elif self.path == "/subjects":
                body, code = ["telemetry-value"], 200
            else:
                body, code = {"error_code": 40403, "message": "Schema not found"}, 404
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
