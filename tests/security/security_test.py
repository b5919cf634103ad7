#!/usr/bin/python3
"""End-to-end security tests of `tandem server` (issue 19, docs/security.md).

A Python grpcio client proves each rule over real sockets against real
`tandem-engine server` processes: TLS and mutual TLS, bearer tokens with
roles, the WorkerControl sender checks, unguessable job ids, confinement of
output folders and data paths, limits, job deletion.

    python3 tests/security/security_test.py --engine build/cli/tandem-engine \
        [--proto-dir proto] [--keep] [-v] [unittest arguments, e.g. -k Worker]

Needs Debian's python3-grpcio and python3-protobuf, `protoc` (protobuf-compiler,
the same 3.21 release as python3-protobuf) and `openssl`. Message classes are
generated at test time from proto/ with `protoc --python_out` (no grpc_tools);
RPCs are called through channel.unary_unary / unary_stream / stream_stream.

Everything lives in one temporary folder: a CA, a server certificate
(localhost, 127.0.0.1), a worker client certificate, a second CA with a stray
client certificate, token files, two tiny synthetic data sets. Every server
started is killed at the end; every call has a deadline.
"""

import argparse
import collections
import ctypes
import os
import queue
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

import grpc

# Set by main() / setUpModule().
ENGINE = None
PROTO_DIR = None
KEEP = False
WORK = None  # the temporary folder
PB = None  # generated message modules
PKI = None  # certificate and key files
DATA = None  # the --data-root folder
OUTSIDE = None  # a folder outside every --data-root and --jobs-dir
SERVERS = []  # every Server started, killed at the end

# Tokens (>= 16 characters) and their names; one file for every server.
TOKENS = {
    "admin": ("admin-" + secrets.token_hex(16), "admin", "root"),
    "alice": ("alice-" + secrets.token_hex(16), "submit", "alice"),
    "bob": ("bob-" + secrets.token_hex(16), "submit", "bob"),
    "confine": ("confine-" + secrets.token_hex(16), "submit", "confine"),
    "limits": ("limits-" + secrets.token_hex(16), "submit", "limits"),
    "rate": ("rate-" + secrets.token_hex(16), "submit", "rate"),
    "queue": ("queue-" + secrets.token_hex(16), "submit", "queue"),
    "other": ("other-" + secrets.token_hex(16), "submit", "other"),
    "reader": ("reader-" + secrets.token_hex(16), "read", "reader"),
    "worker": ("worker-" + secrets.token_hex(16), "worker", "workers"),
}


def token(who):
    return TOKENS[who][0]


OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
AUTH_ERRORS = (UNAUTHENTICATED, PERMISSION_DENIED)


# --- set-up helpers -----------------------------------------------------------


def run(args, cwd=None, timeout=120):
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (" ".join(args), done.returncode, done.stdout,
                                                     done.stderr))
    return done.stdout


def generate_messages(out):
    """protoc --python_out for tandem/v1/*.proto and the health service."""
    os.makedirs(out)
    protos = sorted(
        os.path.join("tandem", "v1", name)
        for name in os.listdir(os.path.join(PROTO_DIR, "tandem", "v1"))
        if name.endswith(".proto"))
    run(["protoc", "--python_out=" + out, "-I", PROTO_DIR] + protos)
    # grpc/health/v1/health.proto would generate a `grpc` package that shadows
    # grpcio: compile a copy under another file name (same proto package).
    health_dir = os.path.join(WORK, "health-proto")
    os.makedirs(health_dir)
    shutil.copy(os.path.join(PROTO_DIR, "grpc", "health", "v1", "health.proto"),
                os.path.join(health_dir, "tandem_test_health.proto"))
    run(["protoc", "--python_out=" + out, "-I", health_dir, "tandem_test_health.proto"])
    sys.path.insert(0, out)
    from tandem.v1 import job_spec_pb2, rank_event_pb2, tandem_pb2, worker_pb2  # noqa: E402
    import tandem_test_health_pb2  # noqa: E402
    return argparse.Namespace(spec=job_spec_pb2, event=rank_event_pb2, tandem=tandem_pb2,
                              worker=worker_pb2, health=tandem_test_health_pb2)


def make_pki(d):
    """A CA, a server certificate for localhost/127.0.0.1 and a worker client
    certificate it signs; a second CA and a stray client certificate."""
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def ca(name):
        run(["openssl", "req", "-x509"] + ec + [
            "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj",
            "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign"
        ], cwd=d)

    def leaf(name, ca_name, common_name, extensions):
        run(["openssl", "req", "-new"] + ec +
            ["-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + common_name],
            cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(extensions)
        run([
            "openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca_name + ".pem", "-CAkey",
            ca_name + ".key", "-set_serial", "0x" + secrets.token_hex(8), "-days", "2", "-out",
            name + ".pem", "-extfile", name + ".ext"
        ], cwd=d)

    ca("ca")
    ca("stray-ca")
    leaf("server", "ca", "localhost",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
         "basicConstraints=CA:FALSE\n")
    leaf("worker", "ca", "worker-1", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    leaf("stray", "stray-ca", "stray", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    path = lambda name: os.path.join(d, name)  # noqa: E731
    return argparse.Namespace(ca=path("ca.pem"), server_cert=path("server.pem"),
                              server_key=path("server.key"), worker_cert=path("worker.pem"),
                              worker_key=path("worker.key"), stray_ca=path("stray-ca.pem"),
                              stray_cert=path("stray.pem"), stray_key=path("stray.key"))


def synth(out, domain, seed):
    run([
        ENGINE, "synth", "--out", out, "--domain", domain, "--ids", "16", "--cameras", "3",
        "--seed", str(seed), "--images-per-camera", "3", "--height", "32", "--width", "16",
        "--threads", "1", "--quiet"
    ])


def make_data():
    """DATA (the allow-listed --data-root): two synthetic domains, a weights
    file, image lists; OUTSIDE: the same kinds of files elsewhere; links
    inside DATA that lead out of it."""
    data = os.path.join(WORK, "data")
    outside = os.path.join(WORK, "outside")
    os.makedirs(data)
    os.makedirs(outside)
    synth(os.path.join(data, "market"), "market", 3)
    synth(os.path.join(data, "duke"), "duke", 4)
    shutil.copytree(os.path.join(data, "market"), os.path.join(outside, "market"))
    for folder in (data, outside):
        with open(os.path.join(folder, "weights.pt"), "wb") as f:
            f.write(b"not really weights")
        images = sorted(os.listdir(os.path.join(data, "market", "bounding_box_train")))[:8]
        for name in ("source.txt", "target.txt", "test.txt"):
            with open(os.path.join(folder, name), "w") as f:
                for i, image in enumerate(images):
                    f.write("%s %d\n" % (os.path.join(data, "market", "bounding_box_train", image),
                                         i % 2))
    os.symlink(outside, os.path.join(data, "escape"))  # a folder link out of DATA
    os.symlink(os.path.join(outside, "weights.pt"), os.path.join(data, "escape-weights.pt"))
    os.symlink(os.path.join(outside, "no-such-file.pt"), os.path.join(data, "dangling.pt"))
    return data, outside


def write_tokens(path, lines=None):
    with open(path, "w") as f:
        f.write("# Tandem test tokens: TOKEN ROLE NAME\n\n")
        if lines is None:
            lines = ["%s %s %s" % entry for entry in TOKENS.values()]
        f.write("\n".join(lines) + "\n")
    return path


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when this test process dies (a
    ctest timeout kills only us), so no server outlives the test."""
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    """As tests/support/deployment.h does: bind port 0 on loopback, close, reuse."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- clients ------------------------------------------------------------------

Reply = collections.namedtuple("Reply", "code details value")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def credentials(ca=None, cert=None, key=None):
    read = lambda p: read_bytes(p) if p else None  # noqa: E731
    return grpc.ssl_channel_credentials(root_certificates=read(ca or PKI.ca),
                                        private_key=read(key), certificate_chain=read(cert))


def metadata(tok):
    """`authorization: Bearer TOKEN` (None: no header)."""
    return None if tok is None else [("authorization", "Bearer " + tok)]


class Client:
    """tandem.v1.Tandem and grpc.health.v1.Health over one channel."""

    RESPONSES = {
        "SubmitJob": "Job",
        "GetJob": "Job",
        "ListJobs": "ListJobsResponse",
        "CancelJob": "Job",
        "Rank": "RankResponse",
        "DeleteJob": "DeleteJobResponse",
    }

    def __init__(self, address, tls=True, ca=None, cert=None, key=None):
        if tls:
            self.channel = grpc.secure_channel(address, credentials(ca, cert, key))
        else:
            self.channel = grpc.insecure_channel(address)

    def close(self):
        self.channel.close()

    def call(self, method, request, tok=None, timeout=20):
        """A unary Tandem call; never raises for a status."""
        response = getattr(PB.tandem, self.RESPONSES[method])
        stub = self.channel.unary_unary("/tandem.v1.Tandem/" + method,
                                        request_serializer=type(request).SerializeToString,
                                        response_deserializer=response.FromString)
        try:
            return Reply(OK, "", stub(request, metadata=metadata(tok), timeout=timeout))
        except grpc.RpcError as error:
            return Reply(error.code(), error.details(), None)

    def watch_first(self, job_id, tok=None, timeout=10):
        """WatchJob's first event (then the call is cancelled)."""
        stub = self.channel.unary_stream("/tandem.v1.Tandem/WatchJob",
                                         request_serializer=PB.tandem.WatchJobRequest.SerializeToString,
                                         response_deserializer=PB.tandem.JobEvent.FromString)
        call = stub(PB.tandem.WatchJobRequest(id=job_id), metadata=metadata(tok), timeout=timeout)
        try:
            return Reply(OK, "", next(call))
        except grpc.RpcError as error:
            return Reply(error.code(), error.details(), None)
        except StopIteration:
            return Reply(OK, "stream ended without an event", None)
        finally:
            call.cancel()

    def health(self, service="", tok=None, timeout=5):
        stub = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=PB.health.HealthCheckRequest.SerializeToString,
            response_deserializer=PB.health.HealthCheckResponse.FromString)
        try:
            return Reply(OK, "", stub(PB.health.HealthCheckRequest(service=service),
                                      metadata=metadata(tok), timeout=timeout))
        except grpc.RpcError as error:
            return Reply(error.code(), error.details(), None)

    # Shorthands.
    def submit(self, spec, tok):
        return self.call("SubmitJob", PB.tandem.SubmitJobRequest(spec=spec), tok)

    def get(self, job_id, tok):
        return self.call("GetJob", PB.tandem.GetJobRequest(id=job_id), tok)

    def cancel(self, job_id, tok):
        return self.call("CancelJob", PB.tandem.CancelJobRequest(id=job_id), tok)

    def delete(self, job_id, tok):
        return self.call("DeleteJob", PB.tandem.DeleteJobRequest(id=job_id), tok)

    def list(self, tok, limit=1000):
        return self.call("ListJobs", PB.tandem.ListJobsRequest(limit=limit), tok)

    def rank(self, job_id, tok, query_index=None, image=None, top_k=5):
        request = PB.tandem.RankRequest(job_id=job_id, top_k=top_k)
        if image is not None:
            request.image = image
        else:
            request.query_index = query_index or 0
        return self.call("Rank", request, tok, timeout=60)


class FakeWorker:
    """A WorkerControl.Connect stream driven by the test: registers, sends a
    heartbeat every 0.5 s, and whatever the test sends; the server's commands
    arrive in a queue."""

    def __init__(self, server, name, tok=None, cert=None, key=None, tls=True, register=True):
        self.name = name
        self.outbox = queue.Queue()
        self.commands = queue.Queue()
        self.error = None  # (code, details) once the stream ended with a status
        self.ended = threading.Event()
        self.closed = False
        if tls:
            self.channel = grpc.secure_channel(server.address, credentials(PKI.ca, cert, key))
        else:
            self.channel = grpc.insecure_channel(server.address)
        connect = self.channel.stream_stream(
            "/tandem.v1.WorkerControl/Connect",
            request_serializer=PB.worker.WorkerMessage.SerializeToString,
            response_deserializer=PB.worker.WorkerCommand.FromString)
        first = None
        if register:
            first = PB.worker.WorkerMessage(register=PB.worker.RegisterWorker(
                name=name, host="fake-" + name, device_kind="cpu", gpus=0, pid=os.getpid(),
                slots=1))
        self.call = connect(self._messages(first), metadata=metadata(tok), timeout=240)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _messages(self, first):
        if first is not None:
            yield first
        while not self.closed and not self.ended.is_set():
            try:
                message = self.outbox.get(timeout=0.5)
            except queue.Empty:
                message = PB.worker.WorkerMessage(heartbeat=PB.worker.Heartbeat(
                    time_ms=int(time.time() * 1000)))
            if message is None:
                return
            yield message

    def _read(self):
        try:
            for command in self.call:
                self.commands.put(command)
            self.error = (OK, "the server closed the stream")
        except grpc.RpcError as error:
            self.error = (error.code(), error.details())
        finally:
            self.ended.set()

    def send(self, **fields):
        self.outbox.put(PB.worker.WorkerMessage(**fields))

    def next_command(self, timeout):
        try:
            return self.commands.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_registered(self, timeout=15):
        """The Registered command, or None (the stream ended or timed out)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            command = self.next_command(0.1)
            if command is not None and command.HasField("registered"):
                return command.registered
            if command is None and self.ended.is_set() and self.commands.empty():
                return None
        return None

    def close(self):
        self.closed = True
        self.outbox.put(None)
        self.call.cancel()
        self.ended.wait(5)
        self.channel.close()


class Server:
    """One `tandem-engine server` child process on a free loopback port."""

    def __init__(self, name, tls=True, client_ca=True, tokens=True, data_roots=None,
                 extra=(), wait=True):
        self.name = name
        self.dir = os.path.join(WORK, "server-" + name)
        os.makedirs(self.dir)
        self.jobs_dir = os.path.join(self.dir, "jobs")
        os.makedirs(self.jobs_dir)
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.tls = tls
        args = [
            ENGINE, "server", "--listen", self.address, "--db",
            os.path.join(self.dir, "tandem.db"), "--jobs-dir", self.jobs_dir, "--heartbeat",
            "0.5", "--heartbeat-timeout", "30", "--rank-timeout", "60", "--advertise-host",
            "127.0.0.1"
        ]
        if tls:
            args += ["--tls-cert", PKI.server_cert, "--tls-key", PKI.server_key]
            if client_ca:
                args += ["--client-ca", PKI.ca]
        if tokens:
            args += ["--tokens", write_tokens(os.path.join(self.dir, "tokens"))]
        for root in (data_roots if data_roots is not None else [DATA]):
            args += ["--data-root", root]
        args += list(extra)
        self.args = args
        self.log_path = os.path.join(self.dir, "server.log")
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        SERVERS.append(self)
        self.client = Client(self.address, tls=tls)
        if wait:
            self.wait_serving()

    def wait_serving(self, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("tandem server %s exited with %d:\n  %s\n%s" %
                                   (self.name, self.process.returncode, " ".join(self.args),
                                    self.log()))
            last = self.client.health(timeout=2)
            if last.code == OK and last.value.status == PB.health.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
        raise RuntimeError("tandem server %s not SERVING after %d s (last: %s %s):\n%s" %
                           (self.name, timeout, last.code, last.details, self.log()))

    def log(self, tail=4000):
        if not self.log_file.closed:
            self.log_file.flush()
        with open(self.log_path, errors="replace") as f:
            text = f.read()
        return text[-tail:]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.client.close()
        self.log_file.close()


class Process:
    """Another tandem-engine child (a real worker)."""

    def __init__(self, name, args, env=None):
        self.log_path = os.path.join(WORK, name + ".log")
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen([ENGINE] + args, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, preexec_fn=die_with_parent)

    def log(self, tail=4000):
        if not self.log_file.closed:
            self.log_file.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-tail:]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log_file.close()


def start_and_fail(name, args, timeout=20):
    """Runs `tandem-engine server ARGS` expecting it to refuse to start."""
    port = free_port()
    full = [ENGINE, "server", "--listen", "127.0.0.1:%d" % port, "--db",
            os.path.join(WORK, name + ".db"), "--jobs-dir",
            os.path.join(WORK, name + "-jobs")] + args
    process = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, preexec_fn=die_with_parent)
    try:
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        return None, out


# --- specs --------------------------------------------------------------------


def tiny_spec(kind="pretrain", **fields):
    """tests/support/deployment.h's tiny_spec on the DATA domains."""
    spec = PB.spec.JobSpec(kind=kind, seed=1, backbone="small", backbone_width=4, height=32,
                           width=16, identities=4, instances=4, epochs=1, iters=1,
                           loader_threads=1, lr=0.001)
    if kind in ("pretrain", "evaluate"):
        spec.source.kind = "market1501"
        spec.source.root = os.path.join(DATA, "market")
        spec.warmup_epochs = 0
    spec.target.kind = "market1501"
    spec.target.root = os.path.join(DATA, "duke")
    if kind == "mmt":
        spec.clustering = "kmeans"
        spec.k = 8
        spec.bn_group_size = 4
    if kind == "evaluate":
        spec.ClearField("source")
        spec.weights = os.path.join(DATA, "weights.pt")
    for key, value in fields.items():
        setattr(spec, key, value)
    return spec


def classification_spec():
    spec = PB.spec.JobSpec(kind="source_only", seed=1, backbone="small", epochs=1, iters=1,
                           loader_threads=1)
    spec.source.kind = "image_list"
    spec.source.root = DATA
    spec.source.list = os.path.join(DATA, "source.txt")
    spec.target.kind = "image_list"
    spec.target.root = DATA
    spec.target.list = os.path.join(DATA, "target.txt")
    spec.target.test_list = os.path.join(DATA, "test.txt")
    return spec


def set_path(spec, field, value):
    """field: "init", "source.root", "target.test_list", ..."""
    target = spec
    parts = field.split(".")
    for part in parts[:-1]:
        target = getattr(target, part)
    setattr(target, parts[-1], value)


def describe(reply):
    return "%s: %s" % (reply.code.name if reply.code else reply.code, reply.details)


# --- module fixture -----------------------------------------------------------


def setUpModule():
    global WORK, PB, PKI, DATA, OUTSIDE
    WORK = os.path.realpath(tempfile.mkdtemp(prefix="tandem-security-"))
    PB = generate_messages(os.path.join(WORK, "py"))
    PKI = make_pki(os.path.join(WORK, "pki"))
    DATA, OUTSIDE = make_data()


def tearDownModule():
    for server in SERVERS:
        server.stop()
    if KEEP:
        print("security_test: kept %s" % WORK, file=sys.stderr)
    else:
        shutil.rmtree(WORK, ignore_errors=True)


class ServerTestCase(unittest.TestCase):
    """A TestCase class with one server for all its tests."""

    server_name = None
    server_kwargs = {}

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.server_name, **cls.server_kwargs)
        cls.client = cls.server.client

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def server_log(self):
        return "\n--- server log (tail) ---\n" + self.server.log()

    def submit_ok(self, spec, who):
        reply = self.client.submit(spec, token(who))
        self.assertEqual(reply.code, OK,
                         "SubmitJob as %s of a valid spec failed: %s" % (who, describe(reply)) +
                         self.server_log())
        return reply.value

    def wait_state(self, job_id, states, timeout=30, who="admin"):
        deadline = time.time() + timeout
        job = None
        while time.time() < deadline:
            reply = self.client.get(job_id, token(who))
            if reply.code == OK:
                job = reply.value
                if job.state in states:
                    return job
            time.sleep(0.1)
        self.fail("job %s did not reach %s within %d s; last: %s" %
                  (job_id, [PB.tandem.JobState.Name(s) for s in states], timeout,
                   PB.tandem.JobState.Name(job.state) if job else None) + self.server_log())


# --- TLS, tokens, roles, ids, owners, output folders, data paths ----------------


class JobServiceSecurity(ServerTestCase):
    """TLS + --client-ca + --tokens + --jobs-dir + --data-root; no workers ever
    register, so every accepted job stays QUEUED."""

    server_name = "jobs"
    server_kwargs = dict(extra=["--submit-rate", "600", "--max-queued", "1000"])

    def queued_job(self, who="alice", **fields):
        return self.submit_ok(tiny_spec(**fields), who)

    # TLS ----------------------------------------------------------------------

    def test_tls_plaintext_client_cannot_talk_to_the_tls_listener(self):
        client = Client(self.server.address, tls=False)
        try:
            reply = client.health()
            self.assertEqual(reply.code, UNAVAILABLE,
                             "a plaintext health check of a TLS listener: " + describe(reply))
            reply = client.list(token("admin"))
            self.assertEqual(reply.code, UNAVAILABLE,
                             "a plaintext ListJobs (admin token) on a TLS listener: " +
                             describe(reply))
        finally:
            client.close()

    def test_tls_client_trusting_another_ca_refuses_the_server(self):
        client = Client(self.server.address, ca=PKI.stray_ca)
        try:
            reply = client.list(token("admin"))
            self.assertEqual(reply.code, UNAVAILABLE,
                             "ListJobs from a client trusting another CA: " + describe(reply))
        finally:
            client.close()

    def test_tls_users_connect_without_a_client_certificate(self):
        reply = self.client.list(token("reader"))
        self.assertEqual(reply.code, OK,
                         "ListJobs as reader over TLS without a client certificate: " +
                         describe(reply) + self.server_log())

    def test_tls_a_client_certificate_from_another_ca_is_refused(self):
        # --client-ca verifies a certificate when one is presented (stricter
        # reading: an unverifiable certificate fails the handshake).
        client = Client(self.server.address, cert=PKI.stray_cert, key=PKI.stray_key)
        try:
            reply = client.list(token("admin"))
            self.assertEqual(reply.code, UNAVAILABLE,
                             "ListJobs (admin token) presenting a client certificate of another "
                             "CA: " + describe(reply))
        finally:
            client.close()

    # Tokens -------------------------------------------------------------------

    def test_health_is_open_without_a_token(self):
        for service in ("", "tandem.v1.Tandem"):
            reply = self.client.health(service)
            self.assertEqual(reply.code, OK,
                             "health Check(%r) without a token: %s" % (service, describe(reply)))
            self.assertEqual(reply.value.status, PB.health.HealthCheckResponse.SERVING)

    def every_call(self, job_id):
        """(name, function(tok) -> Reply) for every Tandem RPC on job_id."""
        c = self.client
        return [
            ("SubmitJob", lambda tok: c.submit(tiny_spec(), tok)),
            ("GetJob", lambda tok: c.get(job_id, tok)),
            ("ListJobs", lambda tok: c.list(tok)),
            ("CancelJob", lambda tok: c.cancel(job_id, tok)),
            ("WatchJob", lambda tok: c.watch_first(job_id, tok)),
            ("Rank", lambda tok: c.rank(job_id, tok, query_index=0)),
            ("DeleteJob", lambda tok: c.delete(job_id, tok)),
        ]

    def test_tokens_every_call_without_a_valid_token_is_unauthenticated(self):
        job = self.queued_job("bob")
        alice = token("alice")
        bad = [
            ("no authorization header", None),
            ("an unknown token", "Bearer " + "x" * 40),
            ("a valid token without 'Bearer '", alice),
            ("'Basic' scheme", "Basic " + alice),
            ("'Bearer' without a token", "Bearer "),
            ("a valid token's prefix", "Bearer " + alice[:16]),
            ("a valid token plus a character", "Bearer " + alice + "x"),
        ]
        names = [name for name, _ in self.every_call(job.id)]
        failures = []
        for what, header in bad:
            for name in names:
                reply = self.raw_call(name, job.id, header)
                if reply.code != UNAUTHENTICATED:
                    failures.append("%s with %s: expected UNAUTHENTICATED, got %s" %
                                    (name, what, describe(reply)))
        self.assertFalse(failures, "\n" + "\n".join(failures))
        reply = self.client.get(job.id, token("admin"))
        self.assertEqual(reply.code, OK, describe(reply))
        self.assertEqual(reply.value.state, PB.tandem.QUEUED,
                         "an unauthenticated CancelJob/DeleteJob changed the job")

    def raw_call(self, name, job_id, header):
        """The RPC `name` on job_id with the authorization header exactly
        `header` (None: no header)."""
        md = None if header is None else [("authorization", header)]
        requests = {
            "SubmitJob": PB.tandem.SubmitJobRequest(spec=tiny_spec()),
            "GetJob": PB.tandem.GetJobRequest(id=job_id),
            "ListJobs": PB.tandem.ListJobsRequest(),
            "CancelJob": PB.tandem.CancelJobRequest(id=job_id),
            "Rank": PB.tandem.RankRequest(job_id=job_id, query_index=0),
            "DeleteJob": PB.tandem.DeleteJobRequest(id=job_id),
        }
        if name == "WatchJob":
            stub = self.client.channel.unary_stream(
                "/tandem.v1.Tandem/WatchJob",
                request_serializer=PB.tandem.WatchJobRequest.SerializeToString,
                response_deserializer=PB.tandem.JobEvent.FromString)
            call = stub(PB.tandem.WatchJobRequest(id=job_id), metadata=md, timeout=10)
            try:
                return Reply(OK, "", next(call))
            except grpc.RpcError as error:
                return Reply(error.code(), error.details(), None)
            finally:
                call.cancel()
        request = requests[name]
        response = getattr(PB.tandem, Client.RESPONSES[name])
        stub = self.client.channel.unary_unary("/tandem.v1.Tandem/" + name,
                                               request_serializer=type(request).SerializeToString,
                                               response_deserializer=response.FromString)
        try:
            return Reply(OK, "", stub(request, metadata=md, timeout=20))
        except grpc.RpcError as error:
            return Reply(error.code(), error.details(), None)

    def test_roles_read_reads_and_nothing_else(self):
        job = self.queued_job("bob")
        before = len(self.client.list(token("admin")).value.jobs)
        failures = []
        for name, call in self.every_call(job.id):
            reply = call(token("reader"))
            if name in ("SubmitJob", "CancelJob", "DeleteJob"):
                if reply.code != PERMISSION_DENIED:
                    failures.append("%s as reader: expected PERMISSION_DENIED, got %s" %
                                    (name, describe(reply)))
            elif reply.code in AUTH_ERRORS:
                failures.append("%s as reader: expected to be allowed, got %s" %
                                (name, describe(reply)))
        self.assertFalse(failures, "\n" + "\n".join(failures) + self.server_log())
        self.assertEqual(len(self.client.list(token("admin")).value.jobs), before,
                         "a reader's SubmitJob stored a job")
        self.assertEqual(self.client.get(job.id, token("reader")).value.state, PB.tandem.QUEUED)

    def test_roles_worker_token_gets_no_job_service_call(self):
        job = self.queued_job("bob")
        failures = []
        for name, call in self.every_call(job.id):
            reply = call(token("worker"))
            if reply.code != PERMISSION_DENIED:
                failures.append("%s as worker: expected PERMISSION_DENIED, got %s" %
                                (name, describe(reply)))
        self.assertFalse(failures, "\n" + "\n".join(failures))
        self.assertEqual(self.client.get(job.id, token("admin")).value.state, PB.tandem.QUEUED)

    def test_roles_submit_reads_too(self):
        job = self.queued_job("bob")
        for name, call in self.every_call(job.id):
            if name in ("GetJob", "ListJobs", "WatchJob", "Rank"):
                reply = call(token("alice"))
                self.assertNotIn(reply.code, AUTH_ERRORS,
                                 "%s as alice (submit) on bob's job: %s" % (name, describe(reply)))

    def test_roles_submit_cancels_and_deletes_only_its_own_jobs(self):
        bobs = self.queued_job("bob")
        for who in ("alice", "reader"):
            reply = self.client.cancel(bobs.id, token(who))
            self.assertEqual(reply.code, PERMISSION_DENIED,
                             "CancelJob of bob's job as %s: %s" % (who, describe(reply)))
        self.assertEqual(self.client.get(bobs.id, token("admin")).value.state, PB.tandem.QUEUED,
                         "someone else's CancelJob cancelled bob's job")
        # Bob cancels his own; alice still may not delete it.
        reply = self.client.cancel(bobs.id, token("bob"))
        self.assertEqual(reply.code, OK, "CancelJob of bob's job as bob: " + describe(reply))
        reply = self.client.delete(bobs.id, token("alice"))
        self.assertEqual(reply.code, PERMISSION_DENIED,
                         "DeleteJob of bob's ended job as alice: " + describe(reply))
        self.assertEqual(self.client.get(bobs.id, token("admin")).code, OK,
                         "alice's DeleteJob removed bob's job")
        reply = self.client.delete(bobs.id, token("bob"))
        self.assertEqual(reply.code, OK, "DeleteJob of bob's ended job as bob: " + describe(reply))

    def test_roles_admin_cancels_and_deletes_anyones_job(self):
        bobs = self.queued_job("bob")
        reply = self.client.cancel(bobs.id, token("admin"))
        self.assertEqual(reply.code, OK, "CancelJob of bob's job as admin: " + describe(reply))
        self.assertEqual(reply.value.state, PB.tandem.CANCELLED)
        reply = self.client.delete(bobs.id, token("admin"))
        self.assertEqual(reply.code, OK, "DeleteJob of bob's job as admin: " + describe(reply))
        self.assertEqual(self.client.get(bobs.id, token("admin")).code, NOT_FOUND)

    # Ids and owners ----------------------------------------------------------------

    def test_job_ids_are_32_lowercase_hex_and_unguessable(self):
        ids = [self.queued_job("alice").id for _ in range(3)]
        for job_id in ids:
            self.assertRegex(job_id, r"^[0-9a-f]{32}$", "job id %r" % job_id)
        self.assertEqual(len(set(ids)), 3, "job ids repeat: %s" % ids)
        # Not a counter: consecutive ids share no long prefix.
        common = os.path.commonprefix(ids)
        self.assertLess(len(common), 8, "consecutive job ids share the prefix %r: %s" %
                        (common, ids))
        for guess in ("1", "2", "0", "00000000000000000000000000000001"):
            reply = self.client.get(guess, token("admin"))
            self.assertEqual(reply.code, NOT_FOUND, "GetJob(%r): %s" % (guess, describe(reply)))
        for job_id in ids:
            self.client.cancel(job_id, token("alice"))

    def test_job_owner_is_the_submitting_tokens_name(self):
        job = self.queued_job("alice")
        self.assertEqual(job.owner, "alice", "SubmitJob's reply")
        self.assertEqual(self.client.get(job.id, token("reader")).value.owner, "alice", "GetJob")
        job = self.queued_job("admin")
        self.assertEqual(job.owner, "root")
        self.client.cancel(job.id, token("admin"))

    # Cancel and delete -----------------------------------------------------------

    def test_delete_refuses_queued_jobs_and_removes_ended_ones(self):
        job = self.queued_job("alice")
        reply = self.client.delete(job.id, token("alice"))
        self.assertEqual(reply.code, FAILED_PRECONDITION,
                         "DeleteJob of a QUEUED job: " + describe(reply))
        reply = self.client.cancel(job.id, token("alice"))
        self.assertEqual(reply.code, OK, "CancelJob of a QUEUED job: " + describe(reply))
        self.assertEqual(reply.value.state, PB.tandem.CANCELLED,
                         "CancelJob of a QUEUED job answers CANCELLED at once")
        output_dir = reply.value.spec.output_dir
        reply = self.client.delete(job.id, token("alice"))
        self.assertEqual(reply.code, OK, "DeleteJob of a CANCELLED job: " + describe(reply))
        self.assertEqual(reply.value.id, job.id)
        self.assertIn(reply.value.removed_output_dir, ("", output_dir))
        self.assertFalse(os.path.exists(output_dir), "%s still exists" % output_dir)
        self.assertTrue(os.path.isdir(self.server.jobs_dir), "the --jobs-dir itself was removed")
        self.assertEqual(self.client.get(job.id, token("alice")).code, NOT_FOUND)
        listed = [j.id for j in self.client.list(token("admin")).value.jobs]
        self.assertNotIn(job.id, listed)
        reply = self.client.delete(job.id, token("admin"))
        self.assertEqual(reply.code, NOT_FOUND, "DeleteJob of a deleted job: " + describe(reply))

    # Output folders --------------------------------------------------------------

    def test_output_dir_relative_and_empty_go_under_jobs_dir(self):
        jobs = os.path.realpath(self.server.jobs_dir)
        job = self.queued_job("alice", output_dir="team-a/run-1")
        self.assertEqual(os.path.realpath(job.spec.output_dir), os.path.join(jobs, "team-a", "run-1"),
                         "relative output_dir")
        self.client.cancel(job.id, token("alice"))
        job = self.queued_job("alice")
        self.assertTrue(os.path.realpath(job.spec.output_dir).startswith(jobs + os.sep),
                        "empty output_dir became %s, not under %s" % (job.spec.output_dir, jobs))
        self.client.cancel(job.id, token("alice"))
        inside = os.path.join(jobs, "absolute-inside")
        job = self.queued_job("alice", output_dir=inside)
        self.assertEqual(os.path.realpath(job.spec.output_dir), inside, "absolute output_dir inside")
        self.client.cancel(job.id, token("alice"))

    def test_output_dir_outside_jobs_dir_is_refused(self):
        jobs = self.server.jobs_dir
        os.symlink(OUTSIDE, os.path.join(jobs, "link-out"))
        cases = [
            ("absolute outside", os.path.join(OUTSIDE, "out")),
            ("/etc", "/etc/tandem-security-test"),
            ("relative with ..", "../escaped"),
            ("relative with .. inside", "a/../../escaped"),
            ("absolute with ..", os.path.join(jobs, "..", "escaped")),
            ("through a link in --jobs-dir", "link-out/x"),
            ("absolute through a link", os.path.join(jobs, "link-out", "x")),
        ]
        failures = []
        for what, path in cases:
            reply = self.client.submit(tiny_spec(output_dir=path), token("alice"))
            if reply.code == OK:
                self.client.cancel(reply.value.id, token("alice"))
            if (reply.code != INVALID_ARGUMENT or "spec.output_dir" not in reply.details or
                    "--jobs-dir" not in reply.details):
                failures.append("output_dir %s (%r): expected INVALID_ARGUMENT naming "
                                "spec.output_dir and --jobs-dir, got %s%s" %
                                (what, path, describe(reply), " (output_dir %s)" %
                                 reply.value.spec.output_dir if reply.value else ""))
        self.assertFalse(failures, "\n" + "\n".join(failures))
        self.assertFalse(os.path.exists(os.path.join(OUTSIDE, "out")))
        self.assertFalse(os.path.exists(os.path.join(WORK, "server-jobs", "escaped")))

    def test_output_dir_may_not_be_the_jobs_dir_itself(self):
        # Stricter reading: the job's folder must lie strictly under --jobs-dir,
        # since DeleteJob removes it (and with it every other job's folder).
        failures = []
        for path in (".", "", self.server.jobs_dir, self.server.jobs_dir + "/", "a/.."):
            if path == "":
                continue  # empty: the server picks JOBS_DIR/job-ID (tested above)
            reply = self.client.submit(tiny_spec(output_dir=path), token("alice"))
            if reply.code == OK:
                self.client.cancel(reply.value.id, token("alice"))
                failures.append("output_dir %r accepted as %s" % (path, reply.value.spec.output_dir))
            elif reply.code != INVALID_ARGUMENT:
                failures.append("output_dir %r: expected INVALID_ARGUMENT, got %s" %
                                (path, describe(reply)))
        self.assertFalse(failures, "\n" + "\n".join(failures))

    # Data paths ------------------------------------------------------------------

    def data_cases(self):
        """(field, base spec) for every data path a spec can name."""
        return [
            ("source.root", tiny_spec("pretrain")),
            ("target.root", tiny_spec("pretrain")),
            ("init", tiny_spec("pretrain", init=os.path.join(DATA, "weights.pt"))),
            ("init_1", tiny_spec("mmt", init_1=os.path.join(DATA, "weights.pt"),
                                 init_2=os.path.join(DATA, "weights.pt"))),
            ("init_2", tiny_spec("mmt", init_1=os.path.join(DATA, "weights.pt"),
                                 init_2=os.path.join(DATA, "weights.pt"))),
            ("weights", tiny_spec("evaluate")),
            ("source.list", classification_spec()),
            ("target.list", classification_spec()),
            ("target.test_list", classification_spec()),
            ("source.root", classification_spec()),
        ]

    def test_data_paths_inside_data_root_are_accepted(self):
        # The control for the refusals below: each base spec is valid.
        failures = []
        for field, spec in self.data_cases():
            reply = self.client.submit(spec, token("confine"))
            if reply.code == OK:
                self.client.cancel(reply.value.id, token("confine"))
            else:
                failures.append("the %s base spec (%s, every path under --data-root): %s" %
                                (field, spec.kind, describe(reply)))
        self.assertFalse(failures, "\n" + "\n".join(failures))

    def test_data_paths_outside_data_root_are_refused(self):
        failures = []
        for field, spec in self.data_cases():
            is_folder = field.endswith("root")
            name = "market" if is_folder else ("weights.pt" if "init" in field or
                                              field == "weights" else "source.txt")
            variants = [
                ("absolute outside", os.path.join(OUTSIDE, name)),
                ("with ..", os.path.join(DATA, "..", "outside", name)),
                ("through a folder link in the data root", os.path.join(DATA, "escape", name)),
                ("/etc", "/etc" if is_folder else "/etc/passwd"),
            ]
            if not is_folder:
                variants.append(("a file link in the data root",
                                 os.path.join(DATA, "escape-weights.pt")))
                # Resolves outside too: its target may appear after the check.
                variants.append(("a dangling link in the data root leading out",
                                 os.path.join(DATA, "dangling.pt")))
            for what, path in variants:
                spec_copy = type(spec)()
                spec_copy.CopyFrom(spec)
                set_path(spec_copy, field, path)
                reply = self.client.submit(spec_copy, token("confine"))
                if reply.code == OK:
                    self.client.cancel(reply.value.id, token("confine"))
                if (reply.code != INVALID_ARGUMENT or ("spec." + field) not in reply.details or
                        "--data-root" not in reply.details):
                    failures.append("%s %s %s (%s): expected INVALID_ARGUMENT naming spec.%s and "
                                    "--data-root, got %s" %
                                    (spec.kind, field, what, path, field, describe(reply)))
        self.assertFalse(failures, "\n" + "\n".join(failures))

    def test_data_paths_refusal_does_not_reveal_whether_a_file_exists(self):
        failures = []
        pairs = [
            ("init", tiny_spec("pretrain"), os.path.join(OUTSIDE, "weights.pt"),
             os.path.join(OUTSIDE, "no-such-file.pt")),
            ("init", tiny_spec("pretrain"), "/etc/passwd", "/etc/no-such-file"),
            ("init", tiny_spec("pretrain"), os.path.join(DATA, "escape-weights.pt"),
             os.path.join(DATA, "dangling.pt")),
            ("weights", tiny_spec("evaluate"), os.path.join(OUTSIDE, "weights.pt"),
             os.path.join(OUTSIDE, "no-such-file.pt")),
            ("source.root", tiny_spec("pretrain"), os.path.join(OUTSIDE, "market"),
             os.path.join(OUTSIDE, "no-such-folder")),
            ("target.test_list", classification_spec(), os.path.join(OUTSIDE, "test.txt"),
             os.path.join(OUTSIDE, "no-such-list.txt")),
        ]
        for field, base, existing, missing in pairs:
            replies = []
            for path in (existing, missing):
                spec = type(base)()
                spec.CopyFrom(base)
                set_path(spec, field, path)
                reply = self.client.submit(spec, token("confine"))
                if reply.code == OK:
                    self.client.cancel(reply.value.id, token("confine"))
                text = reply.details
                for p in sorted({path, os.path.realpath(path), os.path.normpath(path)},
                                key=len, reverse=True):
                    text = text.replace(p, "PATH")
                replies.append((reply.code, text, reply))
            (code_a, text_a, reply_a), (code_b, text_b, reply_b) = replies
            if code_a != code_b or text_a != text_b or code_a == OK:
                failures.append("spec.%s: the existing %s and the missing %s get different "
                                "answers (or are accepted):\n    %s\n    %s" %
                                (field, existing, missing, describe(reply_a), describe(reply_b)))
        self.assertFalse(failures, "\n" + "\n".join(failures))

    # Limits ----------------------------------------------------------------------

    def test_limits_spec_size_fields_have_upper_bounds(self):
        huge = 10**12
        cases = [("height", huge), ("width", huge), ("backbone_width", huge),
                 ("identities", huge), ("instances", huge), ("epochs", huge), ("iters", huge),
                 ("batch_size", huge), ("bottleneck_dim", huge), ("k", huge),
                 ("loader_threads", huge), ("bn_group_size", huge), ("world_size", 2**31 - 1),
                 ("height", 100000)]
        words = ("limit", "at most", "<=", "must be in", "exceeds", "too large", "maximum")
        failures = []
        for field, value in cases:
            spec = tiny_spec("mmt" if field in ("k", "bn_group_size") else "pretrain")
            setattr(spec, field, value)
            reply = self.client.submit(spec, token("limits"))
            if reply.code == OK:
                self.client.cancel(reply.value.id, token("limits"))
            if (reply.code != INVALID_ARGUMENT or ("spec." + field) not in reply.details or
                    not any(w in reply.details for w in words)):
                failures.append("spec.%s = %d: expected INVALID_ARGUMENT naming spec.%s and its "
                                "limit, got %s" % (field, value, field, describe(reply)))
        self.assertFalse(failures, "\n" + "\n".join(failures))


class ServerConfiguration(unittest.TestCase):
    """Bad security configuration stops `tandem server` at start."""

    def test_tokens_file_with_a_short_token_unknown_role_or_duplicate_is_refused(self):
        cases = [
            ("a 15-character token", ["short-token-15c admin root"]),
            ("an unknown role", ["a" * 32 + " superuser root"]),
            ("a missing role", ["b" * 32]),
            ("a token given twice", ["c" * 32 + " admin x", "c" * 32 + " read y"]),
        ]
        for i, (what, lines) in enumerate(cases):
            path = write_tokens(os.path.join(WORK, "bad-tokens-%d" % i), lines)
            code, out = start_and_fail("bad-tokens", ["--tokens", path])
            self.assertNotIn(code, (0, None),
                             "tandem server started with %s in --tokens:\n%s" % (what, out))
            self.assertIn(path, out, "the error for %s names the file:\n%s" % (what, out))

    def test_half_tls_configuration_is_refused(self):
        cases = [
            ("--tls-cert without --tls-key", ["--tls-cert", PKI.server_cert], "--tls-key"),
            ("--tls-key without --tls-cert", ["--tls-key", PKI.server_key], "--tls-cert"),
            ("--client-ca without TLS", ["--client-ca", PKI.ca], "--client-ca"),
            ("an unreadable --tls-cert", ["--tls-cert", os.path.join(WORK, "missing.pem"),
                                          "--tls-key", PKI.server_key], "--tls-cert"),
        ]
        for what, args, flag in cases:
            code, out = start_and_fail("half-tls", args)
            self.assertNotIn(code, (0, None), "tandem server started with %s:\n%s" % (what, out))
            self.assertIn(flag, out, "the error for %s names %s:\n%s" % (what, flag, out))


class NoDataRoot(ServerTestCase):
    """Without --data-root every spec naming a data path is refused."""

    server_name = "no-data-root"
    server_kwargs = dict(data_roots=[])

    def test_without_data_root_specs_naming_data_are_refused(self):
        for spec in (tiny_spec("pretrain"), classification_spec()):
            reply = self.client.submit(spec, token("alice"))
            if reply.code == OK:
                self.client.cancel(reply.value.id, token("alice"))
            self.assertEqual(reply.code, INVALID_ARGUMENT,
                             "%s spec on a server without --data-root: %s" %
                             (spec.kind, describe(reply)))
            self.assertIn("--data-root", reply.details,
                          "the error says to start the server with --data-root")


# --- per-token rate and queue caps --------------------------------------------------


class SubmitLimits(ServerTestCase):
    server_name = "limits"
    server_kwargs = dict(extra=["--submit-rate", "4", "--max-queued", "2"])

    def test_limits_queued_jobs_per_token_name(self):
        first = self.submit_ok(tiny_spec(), "queue")
        self.submit_ok(tiny_spec(), "queue")
        reply = self.client.submit(tiny_spec(), token("queue"))
        self.assertEqual(reply.code, RESOURCE_EXHAUSTED,
                         "a 3rd queued job with --max-queued 2: " + describe(reply))
        # Another token name is not affected.
        other = self.submit_ok(tiny_spec(), "other")
        self.client.cancel(other.id, token("other"))
        # A cancelled job frees its place.
        self.assertEqual(self.client.cancel(first.id, token("queue")).code, OK)
        self.submit_ok(tiny_spec(), "queue")

    def test_limits_submit_rate_per_token_name(self):
        for i in range(4):
            reply = self.client.submit(tiny_spec(), token("rate"))
            self.assertEqual(reply.code, OK,
                             "submit %d of a burst of 4 with --submit-rate 4: %s" %
                             (i + 1, describe(reply)))
            self.client.cancel(reply.value.id, token("rate"))  # stay under --max-queued
        reply = self.client.submit(tiny_spec(), token("rate"))
        if reply.code == OK:
            self.client.cancel(reply.value.id, token("rate"))
        self.assertEqual(reply.code, RESOURCE_EXHAUSTED,
                         "the 5th submit within a minute with --submit-rate 4: " + describe(reply))
        other = self.submit_ok(tiny_spec(), "other")
        self.client.cancel(other.id, token("other"))


# --- retention ------------------------------------------------------------------------


class Retention(ServerTestCase):
    """--retention-days deletes ended jobs and their folders, never live ones
    (0.00003 days: about 2.6 s; the server looks every 10 s)."""

    server_name = "retention"
    server_kwargs = dict(extra=["--retention-days", "0.00003"])

    def test_retention_deletes_ended_jobs_with_their_folders(self):
        ended = self.submit_ok(tiny_spec(), "alice")
        live = self.submit_ok(tiny_spec(), "alice")
        os.makedirs(ended.spec.output_dir, exist_ok=True)
        with open(os.path.join(ended.spec.output_dir, "model.pt"), "w") as f:
            f.write("weights")
        self.assertEqual(self.client.cancel(ended.id, token("alice")).code, OK)
        deadline = time.time() + 40
        while time.time() < deadline:
            if self.client.get(ended.id, token("alice")).code == grpc.StatusCode.NOT_FOUND:
                break
            time.sleep(0.5)
        self.assertEqual(self.client.get(ended.id, token("alice")).code, grpc.StatusCode.NOT_FOUND,
                         "the cancelled job outlived --retention-days" + self.server_log())
        self.assertFalse(os.path.exists(ended.spec.output_dir), "its folder was not removed")
        self.assertTrue(os.path.isdir(self.server.jobs_dir), "the jobs folder itself stays")
        still = self.client.get(live.id, token("alice"))
        self.assertEqual(still.code, OK, "a queued job was deleted by retention")
        self.assertEqual(still.value.state, PB.tandem.QUEUED)
        self.client.cancel(live.id, token("alice"))


# --- WorkerControl --------------------------------------------------------------------


def tcp_listeners(port):
    """(address, family) of the sockets listening on `port` (from /proc)."""
    found = []
    for path, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                if family == 4:
                    found.append((socket.inet_ntop(socket.AF_INET,
                                                   struct.pack("<I", int(address, 16))), 4))
                else:
                    raw = bytes.fromhex(address)
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.append((socket.inet_ntop(socket.AF_INET6, raw), 6))
    return found


class WorkerControlSecurity(ServerTestCase):
    """WorkerControl.Connect: who may register, and whose reports count."""

    server_name = "workers"
    server_kwargs = dict(extra=["--max-restarts", "0"])

    def setUp(self):
        self.workers = []

    def tearDown(self):
        for worker in self.workers:
            worker.close()

    def connect(self, name, tok="worker", cert=True, stray=False, tls=True):
        if stray:
            cert_file, key_file = PKI.stray_cert, PKI.stray_key
        elif cert:
            cert_file, key_file = PKI.worker_cert, PKI.worker_key
        else:
            cert_file = key_file = None
        worker = FakeWorker(self.server, name, token(tok) if tok else None, cert_file, key_file,
                            tls=tls)
        self.workers.append(worker)
        return worker

    def registered(self, name):
        worker = self.connect(name)
        self.assertIsNotNone(worker.wait_registered(),
                             "fake worker %s (worker token + worker certificate) did not "
                             "register: %s" % (name, worker.error) + self.server_log())
        return worker

    def assert_refused(self, worker, what, codes):
        registered = worker.wait_registered(timeout=10)
        self.assertIsNone(registered, "%s registered (worker id %s)" %
                          (what, registered.worker_id if registered else ""))
        self.assertTrue(worker.ended.wait(10), "%s: the stream stays open" % what)
        self.assertIn(worker.error[0], codes,
                      "%s: the stream ended with %s, expected one of %s" %
                      (what, worker.error, [c.name for c in codes]))

    def test_connect_with_worker_token_and_certificate_registers(self):
        self.registered("good")

    def test_connect_without_a_token_is_unauthenticated(self):
        self.assert_refused(self.connect("no-token", tok=None), "Connect without a token",
                            (UNAUTHENTICATED,))

    def test_connect_with_a_non_worker_token_is_permission_denied(self):
        for who in ("admin", "alice", "reader"):
            self.assert_refused(self.connect("as-" + who, tok=who),
                                "Connect with the %s token" % who, (PERMISSION_DENIED,))

    def test_connect_without_a_client_certificate_is_refused(self):
        self.assert_refused(self.connect("no-cert", cert=False),
                            "Connect with the worker token but no client certificate",
                            AUTH_ERRORS)

    def test_connect_with_a_certificate_of_another_ca_is_refused(self):
        self.assert_refused(self.connect("stray-cert", stray=True),
                            "Connect with the worker token and a stray client certificate",
                            (UNAVAILABLE,) + AUTH_ERRORS)

    def test_connect_over_plaintext_is_refused(self):
        self.assert_refused(self.connect("plaintext", tls=False),
                            "Connect over plaintext to the TLS listener", (UNAVAILABLE,))

    def wait_assignments(self, workers, job_id, count, timeout=30):
        """{worker: AssignRank} once `count` of `workers` got a rank of job_id."""
        assigned = {}
        deadline = time.time() + timeout
        while time.time() < deadline and len(assigned) < count:
            for worker in workers:
                command = worker.next_command(0.05)
                if command is not None and command.HasField("assign") and \
                        command.assign.job_id == job_id:
                    assigned[worker] = command.assign
        self.assertEqual(len(assigned), count, "ranks of job %s assigned to %d of %d workers" %
                         (job_id, len(assigned), count) + self.server_log())
        return assigned

    def forged_events(self, job_id, attempt):
        return [
            PB.worker.JobEventReport(job_id=job_id, attempt=attempt,
                                     event=PB.event.RankEvent(event="phase", phase="evaluate",
                                                              epoch=7)),
            PB.worker.JobEventReport(
                job_id=job_id, attempt=attempt,
                event=PB.event.RankEvent(event="evaluation", epoch=7, mAP=[99.5], rank1=[99.5],
                                         rank5=[99.5], checkpoint="/etc/passwd")),
            PB.worker.JobEventReport(job_id=job_id, attempt=attempt, replayed=True,
                                     event=PB.event.RankEvent(event="epoch", epoch=3, mAP=[98.0],
                                                              checkpoint="/etc/shadow")),
        ]

    def assert_untouched(self, job_id, what, workers_before):
        time.sleep(1.5)  # the server has read the forged messages by now
        reply = self.client.get(job_id, token("admin"))
        self.assertEqual(reply.code, OK, describe(reply))
        job = reply.value
        problems = []
        if job.state != PB.tandem.RUNNING:
            problems.append("state %s (error %r)" % (PB.tandem.JobState.Name(job.state), job.error))
        if job.phase not in (PB.tandem.JOB_PHASE_UNSPECIFIED,):
            problems.append("phase %s" % PB.tandem.JobPhase.Name(job.phase))
        if job.epoch != 0:
            problems.append("epoch %d" % job.epoch)
        if len(job.metrics):
            problems.append("metrics %s" % [(m.epoch, m.map) for m in job.metrics])
        if job.checkpoint:
            problems.append("checkpoint %r" % job.checkpoint)
        if list(job.workers) != workers_before:
            problems.append("workers %s (were %s)" % (list(job.workers), workers_before))
        self.assertFalse(problems, "%s changed job %s: %s" % (what, job_id, "; ".join(problems)) +
                         self.server_log())

    def test_sender_events_and_exits_count_only_from_the_assigned_worker(self):
        a, b = self.registered("fake-a"), self.registered("fake-b")
        job = self.submit_ok(tiny_spec(world_size=1), "alice")
        assigned = self.wait_assignments([a, b], job.id, 1)
        (owner, assign), = assigned.items()
        stranger = b if owner is a else a
        running = self.wait_state(job.id, [PB.tandem.RUNNING])
        workers_before = list(running.workers)
        # The other registered worker forges events and exits of rank 0.
        for event in self.forged_events(job.id, assign.attempt):
            stranger.send(event=event)
        stranger.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign.attempt, rank=0,
                                                  exit_code=0))
        stranger.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign.attempt, rank=0,
                                                  exit_code=1, error_tail="forged"))
        self.assert_untouched(job.id, "events and exits from a worker the rank is not assigned to",
                              workers_before)
        # The assigned worker itself, for another attempt or rank.
        for event in self.forged_events(job.id, assign.attempt + 1):
            owner.send(event=event)
        owner.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign.attempt + 1, rank=0,
                                               exit_code=0))
        owner.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign.attempt, rank=1,
                                               exit_code=1))
        self.assert_untouched(job.id, "the assigned worker's reports for another attempt/rank",
                              workers_before)
        # The assigned worker's own reports count.
        owner.send(event=PB.worker.JobEventReport(
            job_id=job.id, attempt=assign.attempt,
            event=PB.event.RankEvent(event="phase", phase="train", epoch=0)))
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.client.get(job.id, token("admin")).value.phase == PB.tandem.TRAIN:
                break
            time.sleep(0.1)
        self.assertEqual(self.client.get(job.id, token("admin")).value.phase, PB.tandem.TRAIN,
                         "the assigned rank 0 worker's phase event was not applied" +
                         self.server_log())
        owner.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign.attempt, rank=0,
                                               exit_code=0))
        ended = self.wait_state(job.id, [PB.tandem.SUCCEEDED, PB.tandem.FAILED,
                                         PB.tandem.CANCELLED])
        self.assertEqual(ended.state, PB.tandem.SUCCEEDED,
                         "after the assigned worker's RankExited(0): %s %r" %
                         (PB.tandem.JobState.Name(ended.state), ended.error))

    def test_sender_events_count_only_from_rank_0s_worker(self):
        a, b = self.registered("fake-c"), self.registered("fake-d")
        job = self.submit_ok(tiny_spec(world_size=2, identities=4, instances=2), "alice")
        assigned = self.wait_assignments([a, b], job.id, 2)
        by_rank = {assign.rank: (worker, assign) for worker, assign in assigned.items()}
        self.assertEqual(sorted(by_rank), [0, 1], "ranks assigned: %s" % sorted(by_rank))
        (r0, assign0), (r1, assign1) = by_rank[0], by_rank[1]
        running = self.wait_state(job.id, [PB.tandem.RUNNING])
        workers_before = list(running.workers)
        for event in self.forged_events(job.id, assign1.attempt):
            r1.send(event=event)
        r1.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign1.attempt, rank=0,
                                            exit_code=1, error_tail="forged"))
        r0.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign0.attempt, rank=1,
                                            exit_code=1, error_tail="forged"))
        self.assert_untouched(job.id, "rank 1's worker's events, and exits of the other rank",
                              workers_before)
        r1.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign1.attempt, rank=1,
                                            exit_code=0))
        r0.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign0.attempt, rank=0,
                                            exit_code=0))
        ended = self.wait_state(job.id, [PB.tandem.SUCCEEDED, PB.tandem.FAILED,
                                         PB.tandem.CANCELLED])
        self.assertEqual(ended.state, PB.tandem.SUCCEEDED,
                         "after both ranks' own RankExited(0): %s %r" %
                         (PB.tandem.JobState.Name(ended.state), ended.error))

    def test_rendezvous_store_binds_the_advertised_address_only(self):
        # The server serves a TCPStore for each attempt of a multi-rank job.
        a, b = self.registered("fake-e"), self.registered("fake-f")
        job = self.submit_ok(tiny_spec(world_size=2, identities=4, instances=2), "alice")
        assigned = self.wait_assignments([a, b], job.id, 2)
        try:
            for assign in assigned.values():
                self.assertEqual(assign.master_addr, "127.0.0.1", "AssignRank.master_addr")
            port = next(iter(assigned.values())).master_port
            listeners = tcp_listeners(port)
            self.assertTrue(listeners, "nothing listens on master_port %d" % port)
            self.assertEqual({address for address, _ in listeners}, {"127.0.0.1"},
                             "the rendezvous store on port %d listens on %s, not only on the "
                             "advertised 127.0.0.1" % (port, listeners))
        finally:
            for worker, assign in assigned.items():
                worker.send(exited=PB.worker.RankExited(job_id=job.id, attempt=assign.attempt,
                                                        rank=assign.rank, exit_code=0))
            self.wait_state(job.id, [PB.tandem.SUCCEEDED, PB.tandem.FAILED, PB.tandem.CANCELLED])


# --- Rank on a real job ---------------------------------------------------------------


def png(width, height, rows=None):
    """An 8-bit greyscale PNG of zeros (compresses to almost nothing); with
    `rows`, only that many rows of pixel data follow the header (a header
    that claims more than the file holds)."""

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(compressor.compress(row)
                    for _ in range(height if rows is None else rows)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                              0, 0)) + chunk(b"IDAT", data) +
            chunk(b"IEND", b""))


def jpeg_with_comments(jpeg, extra_bytes):
    """The JPEG with COM segments adding `extra_bytes` (still a valid JPEG)."""
    assert jpeg[:2] == b"\xff\xd8"
    segments = b""
    while extra_bytes > 0:
        n = min(extra_bytes, 65000)
        segments += b"\xff\xfe" + struct.pack(">H", n + 2) + b"x" * n
        extra_bytes -= n
    return jpeg[:2] + segments + jpeg[2:]


# --- the clustering service's mutual TLS, used by real ranks --------------------------


def wait_health(client, timeout=30):
    deadline = time.time() + timeout
    reply = None
    while time.time() < deadline:
        reply = client.health(timeout=2)
        if reply.code == OK:
            return reply
        time.sleep(0.2)
    return reply


class ClusteringMutualTls(unittest.TestCase):
    """`tandem cluster --tls-cert --tls-key --client-ca` requires a client
    certificate on every call, and the ranks dial it with their worker's
    (TANDEM_TLS_* handed down by `tandem worker`): an mmt job whose rank 0
    sends its features there succeeds; the same job against a clustering
    service that trusts another CA fails, naming the service."""

    @classmethod
    def start_cluster(cls, name, client_ca):
        address = "127.0.0.1:%d" % free_port()
        process = Process(name, [
            "cluster", "--listen", address, "--tls-cert", PKI.server_cert, "--tls-key",
            PKI.server_key, "--client-ca", client_ca
        ])
        return address, process

    @classmethod
    def start_worker(cls, name, server):
        env = dict(os.environ, TANDEM_TOKEN=token("worker"), TANDEM_TLS_CA=PKI.ca,
                   TANDEM_TLS_CERT=PKI.worker_cert, TANDEM_TLS_KEY=PKI.worker_key)
        return Process(name, ["worker", "--server", server.address, "--name", name,
                              "--threads", "1", "--grace", "5"], env=env)

    @classmethod
    def setUpClass(cls):
        cls.cluster, cls.cluster_process = cls.start_cluster("cluster-ok", PKI.ca)
        cls.stray_cluster, cls.stray_process = cls.start_cluster("cluster-stray", PKI.stray_ca)
        cls.server = Server("clustering-ok", extra=["--clustering", cls.cluster,
                                                    "--max-restarts", "0"])
        ok_jobs = cls.server.jobs_dir
        cls.stray_server = Server("clustering-stray", data_roots=[DATA, ok_jobs],
                                  extra=["--clustering", cls.stray_cluster, "--max-restarts", "0"])
        cls.workers = [cls.start_worker("cluster-worker-ok", cls.server),
                       cls.start_worker("cluster-worker-stray", cls.stray_server)]

    @classmethod
    def tearDownClass(cls):
        for process in cls.workers + [cls.cluster_process, cls.stray_process]:
            process.stop()
        cls.server.stop()
        cls.stray_server.stop()

    def run_job(self, server, spec, timeout=240):
        reply = server.client.submit(spec, token("alice"))
        self.assertEqual(reply.code, OK, "SubmitJob: " + describe(reply) + server.log())
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = server.client.get(reply.value.id, token("alice"))
            if got.code == OK and got.value.state in (PB.tandem.SUCCEEDED, PB.tandem.FAILED,
                                                      PB.tandem.CANCELLED):
                return got.value
            for worker in self.workers:
                self.assertIsNone(worker.process.poll(), "a worker exited:\n" + worker.log())
            time.sleep(0.25)
        self.fail("job %s did not end within %d s\n%s" % (reply.value.id, timeout, server.log()))

    def test_1_listener_requires_a_client_certificate_of_its_ca(self):
        with_cert = Client(self.cluster, ca=PKI.ca, cert=PKI.worker_cert, key=PKI.worker_key)
        without = Client(self.cluster, ca=PKI.ca)
        stray = Client(self.cluster, ca=PKI.ca, cert=PKI.stray_cert, key=PKI.stray_key)
        plain = Client(self.cluster, tls=False)
        try:
            reply = wait_health(with_cert)
            self.assertEqual(reply.code, OK, "health with the worker's certificate: %s\n%s" %
                             (describe(reply), self.cluster_process.log()))
            for name, client in (("no client certificate", without),
                                 ("another CA's certificate", stray), ("plaintext", plain)):
                self.assertNotEqual(client.health().code, OK,
                                    "the clustering service answered a caller with " + name)
        finally:
            for client in (with_cert, without, stray, plain):
                client.close()

    def test_2_ranks_reach_it_with_their_workers_certificate(self):
        pretrained = self.run_job(self.server, tiny_spec())
        self.assertEqual(pretrained.state, PB.tandem.SUCCEEDED, pretrained.error)
        model = os.path.join(pretrained.spec.output_dir, "model.pt")
        mmt = tiny_spec("mmt", init_1=model, init_2=model)
        done = self.run_job(self.server, mmt)
        self.assertEqual(done.state, PB.tandem.SUCCEEDED,
                         "mmt through the mutual-TLS clustering service: %s\n%s" %
                         (done.error, self.server.log()))
        # Control: a clustering service that trusts another CA refuses the
        # ranks' certificate, and the job fails naming the service.
        refused = self.run_job(self.stray_server, tiny_spec("mmt", init_1=model, init_2=model))
        self.assertEqual(refused.state, PB.tandem.FAILED,
                         "mmt against a clustering service of another CA: " +
                         PB.tandem.JobState.Name(refused.state))
        self.assertIn("clustering service", refused.error)


class RankingSecurity(ServerTestCase):
    """A real `tandem-engine worker` (TLS client certificate and worker token
    from TANDEM_TLS_CA/TANDEM_TLS_CERT/TANDEM_TLS_KEY/TANDEM_TOKEN) trains a
    tiny pretrain job; then Rank's answers and limits, and DeleteJob."""

    server_name = "ranking"
    server_kwargs = dict(extra=["--max-image-bytes", "65536", "--max-image-pixels", "1000000"])
    MAX_IMAGE_BYTES = 65536

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = dict(os.environ, TANDEM_TOKEN=token("worker"), TANDEM_TLS_CA=PKI.ca,
                   TANDEM_TLS_CERT=PKI.worker_cert, TANDEM_TLS_KEY=PKI.worker_key)
        # Its health listener serves TLS too (--health-tls-cert/--health-tls-key).
        cls.worker_health = "127.0.0.1:%d" % free_port()
        cls.worker = Process("ranking-worker", [
            "worker", "--server", cls.server.address, "--name", "real-worker", "--threads", "1",
            "--grace", "5", "--health-listen", cls.worker_health, "--health-tls-cert",
            PKI.server_cert, "--health-tls-key", PKI.server_key
        ], env=env)
        cls.job = None
        cls.setup_error = None
        try:
            reply = cls.client.submit(tiny_spec(), token("alice"))
            if reply.code != OK:
                raise RuntimeError("SubmitJob: " + describe(reply))
            deadline = time.time() + 240
            job = reply.value
            while time.time() < deadline:
                if cls.worker.process.poll() is not None:
                    raise RuntimeError("the worker exited with code %d" %
                                       cls.worker.process.returncode)
                got = cls.client.get(job.id, token("alice"))
                if got.code == OK and got.value.state in (PB.tandem.SUCCEEDED, PB.tandem.FAILED,
                                                          PB.tandem.CANCELLED):
                    job = got.value
                    break
                time.sleep(0.25)
            if job.state != PB.tandem.SUCCEEDED:
                raise RuntimeError("the pretrain job ended %s (%r) or timed out" %
                                   (PB.tandem.JobState.Name(job.state), job.error))
            cls.job = job
        except Exception as error:  # reported by every test of the class
            cls.setup_error = "%s\n--- server ---\n%s\n--- worker ---\n%s" % (
                error, cls.server.log(), cls.worker.log())

    @classmethod
    def tearDownClass(cls):
        cls.worker.stop()
        super().tearDownClass()

    def setUp(self):
        if self.setup_error:
            self.fail("no finished job to rank: " + self.setup_error)

    def test_0_worker_health_listener_serves_tls(self):
        secure = Client(self.worker_health, ca=PKI.ca)
        plain = Client(self.worker_health, tls=False)
        try:
            self.assertEqual(secure.health().code, OK, self.worker.log())
            self.assertEqual(plain.health().code, grpc.StatusCode.UNAVAILABLE,
                             "a plaintext client reached the worker's TLS health listener")
        finally:
            secure.close()
            plain.close()

    def test_1_rank_gallery_paths_are_relative_to_the_data_set(self):
        reply = self.client.rank(self.job.id, token("reader"), query_index=0, top_k=10)
        self.assertEqual(reply.code, OK, "Rank as reader: " + describe(reply) + self.server_log())
        self.assertTrue(reply.value.entries, "no entries")
        root = self.job.spec.target.root
        for entry in reply.value.entries:
            path = entry.gallery_path
            self.assertFalse(os.path.isabs(path), "gallery_path %r is absolute" % path)
            self.assertNotIn("..", path.split("/"), "gallery_path %r climbs out" % path)
            self.assertNotIn(WORK, path)
            self.assertTrue(os.path.isfile(os.path.join(root, path)),
                            "gallery_path %r is not a file under the data set root %s" %
                            (path, root))

    def gallery_jpeg(self):
        folder = os.path.join(self.job.spec.target.root, "bounding_box_test")
        return read_bytes(os.path.join(folder, sorted(os.listdir(folder))[-1]))

    def test_2_rank_image_within_limits_is_ranked(self):
        reply = self.client.rank(self.job.id, token("reader"), image=self.gallery_jpeg())
        self.assertEqual(reply.code, OK, "Rank of a 32x16 gallery JPEG: " + describe(reply) +
                         self.server_log())

    def test_3_rank_refuses_images_whose_header_claims_too_many_pixels(self):
        big = png(5000, 5000)  # 25 Mpx > --max-image-pixels 1000000, a valid PNG
        self.assertLess(len(big), self.MAX_IMAGE_BYTES)
        header_only = png(100000, 100000, rows=1)
        for what, image in (("a valid 5000x5000 PNG", big),
                            ("a PNG header claiming 100000x100000", header_only)):
            reply = self.client.rank(self.job.id, token("reader"), image=image)
            self.assertEqual(reply.code, INVALID_ARGUMENT,
                             "Rank of %s with --max-image-pixels 1000000: %s" %
                             (what, describe(reply)))
            self.assertIn("pixel", reply.details.lower(),
                          "the refusal of %s names the pixel limit: %s" % (what, reply.details))
        self.assertEqual(self.client.health().code, OK, "the server survived")

    def test_4_rank_refuses_images_over_max_image_bytes(self):
        image = jpeg_with_comments(self.gallery_jpeg(), self.MAX_IMAGE_BYTES + 1000)
        reply = self.client.rank(self.job.id, token("reader"), image=image)
        self.assertIn(reply.code, (INVALID_ARGUMENT, RESOURCE_EXHAUSTED),
                      "Rank of a valid %d-byte JPEG with --max-image-bytes %d: %s" %
                      (len(image), self.MAX_IMAGE_BYTES, describe(reply)))

    def test_9_delete_removes_an_ended_job_and_its_folder(self):
        output_dir = self.job.spec.output_dir
        self.assertTrue(os.path.isdir(output_dir), "the job's folder %s" % output_dir)
        reply = self.client.delete(self.job.id, token("bob"))
        self.assertEqual(reply.code, PERMISSION_DENIED, "DeleteJob of alice's job as bob: " +
                         describe(reply))
        reply = self.client.delete(self.job.id, token("alice"))
        self.assertEqual(reply.code, OK, "DeleteJob of alice's SUCCEEDED job as alice: " +
                         describe(reply))
        self.assertEqual(os.path.realpath(reply.value.removed_output_dir) if
                         reply.value.removed_output_dir else "", os.path.realpath(output_dir))
        self.assertFalse(os.path.exists(output_dir), "%s still exists" % output_dir)
        self.assertTrue(os.path.isdir(self.server.jobs_dir))
        self.assertTrue(os.path.isdir(self.job.spec.target.root), "the data set was removed")
        self.assertEqual(self.client.get(self.job.id, token("alice")).code, NOT_FOUND)
        self.assertEqual(self.client.rank(self.job.id, token("alice"), query_index=0).code,
                         NOT_FOUND)


def main():
    global ENGINE, PROTO_DIR, KEEP
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", required=True, help="the tandem-engine binary")
    parser.add_argument("--proto-dir", default=os.path.join(here, "..", "..", "proto"),
                        help="the repository's proto/ folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args, rest = parser.parse_known_args()
    ENGINE = os.path.abspath(args.engine)
    PROTO_DIR = os.path.abspath(args.proto_dir)
    KEEP = args.keep
    for tool in ("protoc", "openssl"):
        if shutil.which(tool) is None:
            sys.exit("security_test: `%s` is missing (scripts/setup installs it)" % tool)
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
