"""Every object of every Kubernetes manifest in deploy/ checked against the Kubernetes API's
schemas, offline: no API server, no network (issue 19, part 7).

`kubectl --dry-run=client` needs a server (it asks it for the API's mapping and schema); a
schema validator does not. Nothing in Debian bookworm ships a recent Kubernetes OpenAPI
document (golang-k8s-kube-openapi-dev's test data is Kubernetes 1.13/1.14: no policy/v1,
no gRPC probes), so the schemas come from python3-kubernetes (tools/deps.sh): its model
classes are generated from the Kubernetes OpenAPI spec, one class per definition, with
each field's JSON name (attribute_map), its type (openapi_types) and, in its setter, whether
it is required. They become one JSON schema (a definition per class, no field besides the
declared ones, types checked recursively) that python3-jsonschema validates each object
against, after the object's apiVersion and kind are looked up in the API's operations
(the client's create_* calls: their body type and their POST path /api/v1/... or
/apis/GROUP/VERSION/...). Debian's python3-kubernetes 22.6 is the Kubernetes 1.22 API;
the fields added since then that these manifests use are declared in SINCE_1_22, each
with the release that brought it (a newer python3-kubernetes that has them is used as is),
and the closed value sets (enums, absent from the 1.22 client) of the fields set here in
ENUMS.

Besides the schema, the tests check what a schema cannot: that the objects fit together
(Services select the StatefulSets' pods, the headless names the nodes advertise exist,
probes name declared ports, mounts name volumes), quiverd's flags against its option
table, etcd's variables against `etcd --help`, and the NATS configuration with the Debian
nats-server's `-t` (config test). Negative tests show that a misspelled field, a wrong
type, a missing required field or an unknown kind in any of the real manifests is rejected.
"""
import copy
import functools
import glob
import os
import re
import shutil
import subprocess

import pytest

import quiver_testlib as qt

yaml = pytest.importorskip("yaml")  # python3-yaml: tools/deps.sh
try:
    import jsonschema
    import kubernetes
    from kubernetes.client import models as k8s_models
    from kubernetes.client.configuration import Configuration as K8sConfiguration
except ImportError as e:  # a broken set-up, not a reason to skip
    raise ImportError("%s: tools/deps.sh installs python3-jsonschema and python3-kubernetes" % e)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
K8S_DIR = os.path.join(DEPLOY, "kubernetes")
# every manifest: the cluster's (deploy/kubernetes/) and the single node's (deploy/kubernetes.yaml)
MANIFESTS = sorted(f for f in glob.glob(os.path.join(K8S_DIR, "*.yaml"))
                   if os.path.basename(f) != "kustomization.yaml") + [os.path.join(DEPLOY, "kubernetes.yaml")]


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ------------------------------------------------------------------ the schemas
# Fields Kubernetes added after 1.22 (python3-kubernetes 22.6's API) that the manifests
# use: {class: {jsonName: type}}, types as in openapi_types; new classes in NEW_CLASSES.
SINCE_1_22 = {
    # gRPC probes: beta and on by default in 1.24, GA in 1.27
    "V1Probe": {"grpc": "V1GRPCAction"},
}
NEW_CLASSES = {
    # name: ({jsonName: type}, [required jsonNames])
    "V1GRPCAction": ({"port": "int", "service": "str"}, ["port"]),
}
# 'object' in openapi_types is IntOrString on these fields (elsewhere: free-form JSON)
INT_OR_STRING = {("V1HTTPGetAction", "port"), ("V1TCPSocketAction", "port"),
                 ("V1ServicePort", "targetPort"), ("V1NetworkPolicyPort", "port"),
                 ("V1PodDisruptionBudgetSpec", "maxUnavailable"),
                 ("V1PodDisruptionBudgetSpec", "minAvailable"),
                 ("V1RollingUpdateDeployment", "maxSurge"),
                 ("V1RollingUpdateDeployment", "maxUnavailable"),
                 ("V1RollingUpdateDaemonSet", "maxSurge"),
                 ("V1RollingUpdateDaemonSet", "maxUnavailable")}
# resource.Quantity, a string in the client ("str", "dict(str, str)"): Kubernetes takes
# a number or a string of its grammar (so "4Gi", 2 and "500m", never "4 GB")
QUANTITY_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
QUANTITY = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
            ("V1EmptyDirVolumeSource", "sizeLimit")}
# The 1.22 client has no enums (the spec lists them from 1.23 on): the closed sets of the
# fields these manifests set, from the Kubernetes API reference
ENUMS = {
    ("V1StatefulSetSpec", "podManagementPolicy"): ["OrderedReady", "Parallel"],
    ("V1StatefulSetUpdateStrategy", "type"): ["OnDelete", "RollingUpdate"],
    ("V1Container", "imagePullPolicy"): ["Always", "IfNotPresent", "Never"],
    ("V1ContainerPort", "protocol"): ["SCTP", "TCP", "UDP"],
    ("V1ServicePort", "protocol"): ["SCTP", "TCP", "UDP"],
    ("V1ServiceSpec", "type"): ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ("V1PersistentVolumeClaimSpec", "accessModes"): ["ReadOnlyMany", "ReadWriteMany",
                                                     "ReadWriteOnce", "ReadWriteOncePod"],
    ("V1SeccompProfile", "type"): ["Localhost", "RuntimeDefault", "Unconfined"],
    ("V1PodSecurityContext", "fsGroupChangePolicy"): ["Always", "OnRootMismatch"],
    ("V1ObjectFieldSelector", "fieldPath"): [  # the downward API's env fields
        "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
        "spec.serviceAccountName", "status.hostIP", "status.podIP", "status.podIPs"],
}


def _required(cls):
    """The JSON names of cls's required fields: their setters refuse None."""
    out = []
    for attr, jname in cls.attribute_map.items():
        obj = cls.__new__(cls)
        obj.local_vars_configuration = K8sConfiguration()  # client_side_validation on
        try:
            setattr(obj, attr, None)
        except ValueError:
            out.append(jname)
    return out


def _fields(name):
    """({jsonName: type}, [required]) of a model class, with SINCE_1_22's fields added."""
    if name in NEW_CLASSES and not hasattr(k8s_models, name):
        return NEW_CLASSES[name]
    cls = getattr(k8s_models, name)
    fields = {cls.attribute_map[a]: t for a, t in cls.openapi_types.items()}
    for jname, t in SINCE_1_22.get(name, {}).items():
        fields.setdefault(jname, t)
    return fields, _required(cls)


class Schemas:
    """The Kubernetes API as JSON schemas: kinds[(apiVersion, kind)] = model class name,
    and a validator per model class."""

    def __init__(self):
        self.defs = {}
        self.kinds = self._kinds()

    @staticmethod
    def _kinds():
        """(apiVersion, kind) -> class, from every create operation of the client's API
        classes: the body's type and the POST path (/api/v1/... is the core group)."""
        api_dir = os.path.join(os.path.dirname(kubernetes.client.__file__), "api")
        kinds = {}
        op = re.compile(r"def create_\w+_with_http_info\(.*?:param (V\w+) body:.*?"
                        r"'(/apis?/[^']*)', 'POST'", re.S)
        for path in glob.glob(os.path.join(api_dir, "*_api.py")):
            with open(path) as f:
                src = f.read()
            for m in op.finditer(src):
                cls, url = m.group(1), m.group(2)
                parts = url.split("/")
                api_version = parts[2] if parts[1] == "api" else parts[2] + "/" + parts[3]
                kind = re.sub(r"^V\d+((alpha|beta)\d+)?", "", cls)
                kinds[(api_version, kind)] = cls
        return kinds

    def _type(self, owner, jname, t):
        if (owner, jname) in ENUMS:
            e = {"enum": ENUMS[(owner, jname)]}
            return {"type": "array", "items": e} if t.startswith("list[") else e
        if (owner, jname) in QUANTITY:
            q = {"type": ["string", "number"], "pattern": QUANTITY_RE}
            return {"type": "object", "additionalProperties": q} if t.startswith("dict(") else q
        if t == "object":
            return {"type": ["integer", "string"]} if (owner, jname) in INT_OR_STRING else {}
        prim = {"str": "string", "int": "integer", "bool": "boolean", "float": "number",
                "datetime": "string", "date": "string"}
        if t in prim:
            return {"type": prim[t]}
        m = re.fullmatch(r"list\[(.+)\]", t)
        if m:
            return {"type": "array", "items": self._type(owner, jname, m.group(1))}
        m = re.fullmatch(r"dict\(str, (.+)\)", t)
        if m:
            return {"type": "object", "additionalProperties": self._type(owner, jname, m.group(1))}
        self._define(t)
        return {"$ref": "#/definitions/" + t}

    def _define(self, name):
        if name in self.defs:
            return
        self.defs[name] = None  # recursion guard (JSONSchemaProps refers to itself)
        fields, required = _fields(name)
        self.defs[name] = {
            "type": "object",
            "properties": {j: self._type(name, j, t) for j, t in fields.items()},
            "required": required,
            "additionalProperties": False,
        }

    def problems(self, obj):
        """Everything wrong with one object, as 'path: message' strings (empty: valid)."""
        if not isinstance(obj, dict):
            return ["not a mapping: %r" % (obj,)]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        cls = self.kinds.get((api_version, kind))
        if cls is None:
            return ["apiVersion %r kind %r: no such kind in the Kubernetes API" % (api_version, kind)]
        self._define(cls)
        schema = {"definitions": self.defs, "$ref": "#/definitions/" + cls}
        v = jsonschema.Draft7Validator(schema)
        out = ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(top)", e.message)
               for e in v.iter_errors(obj)]
        # what the API server adds on create: every object here is named
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            out.append("metadata/name: required")
        return sorted(out)


@pytest.fixture(scope="module")
def schemas():
    return Schemas()


# ------------------------------------------------------------ the schema check
@pytest.mark.parametrize("path", MANIFESTS, ids=[os.path.relpath(p, ROOT) for p in MANIFESTS])
def test_every_object_matches_the_api_schema(schemas, path):
    docs = load(path)
    assert docs, "%s holds no object" % path
    bad = {}
    for i, d in enumerate(docs):
        p = schemas.problems(d)
        if p:
            bad["#%d %s/%s" % (i + 1, d.get("kind"), (d.get("metadata") or {}).get("name"))] = p
    assert not bad, "%s:\n%s" % (path, "\n".join("%s: %s" % kv for kv in bad.items()))


def test_the_schemas_know_the_kinds_used(schemas):
    # the lookup is right where it matters and knows the API's groups
    for key, cls in {("v1", "Service"): "V1Service", ("v1", "ConfigMap"): "V1ConfigMap",
                     ("v1", "Secret"): "V1Secret", ("v1", "Namespace"): "V1Namespace",
                     ("apps/v1", "StatefulSet"): "V1StatefulSet",
                     ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
                     ("rbac.authorization.k8s.io/v1", "Role"): "V1Role"}.items():
        assert schemas.kinds.get(key) == cls, key
    assert len(schemas.kinds) > 50
    # required fields are found as such (the 1.22 spec requires a StatefulSet's serviceName)
    assert set(_required(k8s_models.V1StatefulSetSpec)) == {"selector", "serviceName", "template"}
    assert _required(k8s_models.V1Container) == ["name"]
    for name, added in SINCE_1_22.items():
        cls = getattr(k8s_models, name)
        for jname in added:
            # when a newer python3-kubernetes has the field, it has to be ours
            if jname in cls.attribute_map.values():
                attr = {v: k for k, v in cls.attribute_map.items()}[jname]
                assert cls.openapi_types[attr] == added[jname], (name, jname)


@functools.lru_cache(maxsize=None)
def _objects():
    return {os.path.basename(p): load(p) for p in MANIFESTS}


def _find(docs, kind, name=None):
    for d in docs:
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise AssertionError("no %s %s" % (kind, name))


def _container(sts):
    return sts["spec"]["template"]["spec"]["containers"][0]


def _del(path):
    def f(o):
        *head, last = path
        for k in head:
            o = o[k]
        del o[last]
    return f


def _set(path, value):
    def f(o):
        *head, last = path
        for k in head:
            o = o[k]
        o[last] = value
    return f


def _rename(path, new):
    def f(o):
        *head, last = path
        for k in head:
            o = o[k]
        o[new] = o.pop(last)
    return f


C = ["spec", "template", "spec", "containers", 0]
# (file, kind, name, mutation, a substring of the expected error)
BROKEN = [
    # misspelled fields, at every depth
    ("quiverd.yaml", "StatefulSet", "quiverd", _rename(["spec", "replicas"], "replica"),
     "'replica' was unexpected"),
    ("quiverd.yaml", "StatefulSet", "quiverd", _rename(C + ["readinessProbe", "periodSeconds"], "periodSecond"),
     "'periodSecond' was unexpected"),
    ("quiverd.yaml", "StatefulSet", "quiverd", _rename(C + ["livenessProbe", "grpc", "port"], "prot"),
     "'prot' was unexpected"),
    ("quiverd.yaml", "StatefulSet", "quiverd", _rename(C + ["env", 0, "valueFrom", "fieldRef"], "fieldRefs"),
     "'fieldRefs' was unexpected"),
    ("nats.yaml", "StatefulSet", "nats",
     _rename(["spec", "volumeClaimTemplates", 0, "spec", "accessModes"], "accessMode"),
     "'accessMode' was unexpected"),
    ("etcd.yaml", "Service", "etcd", _rename(["spec", "clusterIP"], "clusterIp"), "'clusterIp' was unexpected"),
    ("quiverd.yaml", "PodDisruptionBudget", "quiverd", _rename(["spec", "maxUnavailable"], "maxUnavaliable"),
     "'maxUnavaliable' was unexpected"),
    ("nats.yaml", "ConfigMap", "nats-config", _rename(["data"], "datas"), "'datas' was unexpected"),
    ("secret.yaml", "Secret", "quiver-keys", _rename(["stringData"], "stringdata"), "'stringdata' was unexpected"),
    ("kubernetes.yaml", "StatefulSet", "quiver", _rename(C + ["securityContext", "readOnlyRootFilesystem"],
                                                         "readOnlyRootFileSystem"), "was unexpected"),
    # wrong types
    ("quiverd.yaml", "StatefulSet", "quiverd", _set(["spec", "replicas"], "3"), "'3' is not of type 'integer'"),
    ("quiverd.yaml", "StatefulSet", "quiverd", _set(C + ["livenessProbe", "grpc", "port"], "50051"),
     "is not of type 'integer'"),
    ("quiverd.yaml", "StatefulSet", "quiverd", _set(C + ["args"], "--data=/data"), "is not of type 'array'"),
    ("quiverd.yaml", "StatefulSet", "quiverd",
     _set(["spec", "template", "metadata", "annotations", "prometheus.io/scrape"], True),
     "True is not of type 'string'"),
    ("etcd.yaml", "StatefulSet", "etcd", _set(C + ["securityContext", "allowPrivilegeEscalation"], "no"),
     "is not of type 'boolean'"),
    ("nats.yaml", "StatefulSet", "nats", _set(C + ["resources", "limits", "memory"], "2 GB"),
     "does not match"),
    ("nats.yaml", "StatefulSet", "nats", _set(C + ["ports", 0, "containerPort"], 4222.5),
     "is not of type 'integer'"),
    ("etcd.yaml", "PodDisruptionBudget", "etcd", _set(["spec", "maxUnavailable"], [1]),
     "is not of type 'integer', 'string'"),
    ("quiverd.yaml", "Service", "quiver", _set(["spec", "ports"], {"name": "grpc", "port": 50051}),
     "is not of type 'array'"),
    # values outside a closed set
    ("nats.yaml", "StatefulSet", "nats", _set(["spec", "podManagementPolicy"], "Paralel"),
     "'Paralel' is not one of"),
    ("etcd.yaml", "StatefulSet", "etcd", _set(C + ["env", 0, "valueFrom", "fieldRef", "fieldPath"], "metadata.nam"),
     "'metadata.nam' is not one of"),
    ("quiverd.yaml", "StatefulSet", "quiverd",
     _set(["spec", "volumeClaimTemplates", 0, "spec", "accessModes"], ["ReadWriteOne"]), "is not one of"),
    # required fields
    ("quiverd.yaml", "StatefulSet", "quiverd", _del(C + ["name"]), "'name' is a required property"),
    ("quiverd.yaml", "StatefulSet", "quiverd", _del(C + ["startupProbe", "grpc", "port"]),
     "'port' is a required property"),
    ("etcd.yaml", "StatefulSet", "etcd", _del(["spec", "selector"]), "'selector' is a required property"),
    ("quiverd.yaml", "Service", "quiverd", _del(["spec", "ports", 0, "port"]), "'port' is a required property"),
    ("namespace.yaml", "Namespace", "quiver", _del(["metadata", "name"]), "metadata/name: required"),
    # kinds that do not exist (in that group or version)
    ("quiverd.yaml", "PodDisruptionBudget", "quiverd", _set(["apiVersion"], "apps/v1"), "no such kind"),
    ("quiverd.yaml", "StatefulSet", "quiverd", _set(["apiVersion"], "apps/v2"), "no such kind"),
    ("quiverd.yaml", "Service", "quiver", _set(["kind"], "Servce"), "no such kind"),
]


@pytest.mark.parametrize("fname,kind,name,mutate,expect", BROKEN,
                         ids=["%s-%s-%d" % (b[0], b[1], i) for i, b in enumerate(BROKEN)])
def test_a_broken_object_is_rejected(schemas, fname, kind, name, mutate, expect):
    obj = copy.deepcopy(_find(_objects()[fname], kind, name))
    assert schemas.problems(obj) == []
    mutate(obj)
    p = schemas.problems(obj)
    assert any(expect in s for s in p), p


def test_an_error_names_its_place(schemas):
    sts = copy.deepcopy(_find(_objects()["quiverd.yaml"], "StatefulSet"))
    sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] = {"storage": "100 Gi"}
    _container(sts)["volumeMounts"][1]["readonly"] = True
    assert schemas.problems(sts) == [
        "spec/template/spec/containers/0/volumeMounts/1: Additional properties are not allowed "
        "('readonly' was unexpected)",
        "spec/volumeClaimTemplates/0/spec/resources/requests/storage: '100 Gi' does not match %r"
        % QUANTITY_RE]


# --------------------------------------------------- the cluster's objects fit together
@pytest.fixture(scope="module")
def cluster():
    """The objects of deploy/kubernetes/, by kind and name, with the namespace."""
    objs = {}
    for f in MANIFESTS:
        if os.path.dirname(f) == K8S_DIR:
            for d in load(f):
                key = (d["kind"], d["metadata"]["name"])
                assert key not in objs, "%s %s defined twice" % key
                objs[key] = d
    with open(os.path.join(K8S_DIR, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    return {"objs": objs, "ns": kust["namespace"], "kust": kust}


def _sts(cluster, name):
    return cluster["objs"][("StatefulSet", name)]


def test_kustomization_covers_every_file(cluster):
    k = cluster["kust"]
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    known = {"apiVersion", "kind", "namespace", "resources", "images", "namePrefix", "nameSuffix",
             "labels", "commonAnnotations", "patches", "configMapGenerator", "secretGenerator",
             "generatorOptions", "replicas", "components"}
    assert set(k) <= known, set(k) - known
    files = sorted(os.path.basename(f) for f in MANIFESTS if os.path.dirname(f) == K8S_DIR)
    assert sorted(k["resources"]) == files
    ns, = [name for kind, name in cluster["objs"] if kind == "Namespace"]
    assert ns == k["namespace"]
    for d in cluster["objs"].values():  # kustomize sets it; a different one would be a mistake
        assert d["metadata"].get("namespace", ns) == ns
    images = {c["image"].split(":")[0] for (kind, _), d in cluster["objs"].items() if kind == "StatefulSet"
              for c in d["spec"]["template"]["spec"]["containers"]}
    for im in k.get("images", []):
        assert im["name"] in images, im


def test_kustomize_renders_valid_objects(schemas, cluster):
    """kubectl kustomize (offline) renders the set; each rendered object passes the schema.
    kubectl is no Debian bookworm package that tools/deps.sh installs (kubernetes-client
    is 1.20 and clashes with other kubectl packages): where there is none, this is skipped."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("no kubectl on this machine (kubectl kustomize renders offline)")
    r = subprocess.run([kubectl, "kustomize", K8S_DIR], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, KUBECONFIG=os.devnull))
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(cluster["objs"])
    for d in docs:
        assert schemas.problems(d) == [], d["kind"]
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == cluster["ns"], d["metadata"]


def _pods_selected(sel, labels):
    return sel.items() <= labels.items()


def test_services_pdbs_and_statefulsets_fit(cluster):
    objs = cluster["objs"]
    stss = {n: d for (k, n), d in objs.items() if k == "StatefulSet"}
    assert set(stss) == {"nats", "etcd", "quiverd"}
    for name, sts in stss.items():
        spec = sts["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert _pods_selected(spec["selector"]["matchLabels"], labels), name
        # the headless Service of its stable names, selecting exactly its pods
        svc = objs[("Service", spec["serviceName"])]
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
        assert _pods_selected(svc["spec"]["selector"], labels), name
        for other, o in stss.items():
            if other != name:
                assert not _pods_selected(svc["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"])
        # a PodDisruptionBudget for its pods allowing one down at a time
        pdbs = [d for (k, _), d in objs.items() if k == "PodDisruptionBudget"
                and d["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]]
        assert len(pdbs) == 1 and pdbs[0]["spec"]["maxUnavailable"] == 1, name
        # its own volume per pod, mounted
        claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
        assert claims == {"data"}, name
        pod = spec["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        assert not claims & set(vols)
        for c in pod["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for m in c["volumeMounts"]:
                assert m["name"] in claims or m["name"] in vols, (name, m)
            assert "data" in {m["name"] for m in c["volumeMounts"]}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = c[probe]
                port = (pr.get("grpc") or pr.get("httpGet"))["port"]
                assert port in ports or port in ports.values(), (name, probe, port)
            # every Service port reaches a declared container port
            for s in [d for (k, _), d in objs.items() if k == "Service"
                      and _pods_selected(d["spec"]["selector"], labels)]:
                for sp in s["spec"]["ports"]:
                    assert sp["targetPort"] in ports, (s["metadata"]["name"], sp)
            # resources, security
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], name
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["image"].count(":") == 1 and not c["image"].endswith(":latest"), c["image"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0 and psc["fsGroup"] > 0
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        # ConfigMaps and Secrets mounted exist here with what is read from them
        for v in vols.values():
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in objs, v
            if "secret" in v:
                assert ("Secret", v["secret"]["secretName"]) in objs, v
    assert stss["nats"]["spec"]["replicas"] == 3 and stss["etcd"]["spec"]["replicas"] == 3
    for n in ("nats", "etcd"):  # a member is ready only with its peers: start them together
        assert stss[n]["spec"]["podManagementPolicy"] == "Parallel"
    # the clients' Service: the quiverd pods, not headless
    client = objs[("Service", "quiver")]
    assert client["spec"]["type"] == "ClusterIP" and "clusterIP" not in client["spec"]
    assert _pods_selected(client["spec"]["selector"], stss["quiverd"]["spec"]["template"]["metadata"]["labels"])


def test_probes(cluster):
    q = _container(_sts(cluster, "quiverd"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert q[probe]["grpc"] == {"port": 50051}, probe
    n = _container(_sts(cluster, "nats"))
    e = _container(_sts(cluster, "etcd"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert n[probe]["httpGet"]["path"].split("?")[0] == "/healthz" and n[probe]["httpGet"]["port"] == "monitor"
        assert e[probe]["httpGet"]["path"].split("?")[0] == "/health" and e[probe]["httpGet"]["port"] == "metrics"
    # a lost etcd quorum must not restart every member: liveness reads locally
    assert "serializable=true" in e["livenessProbe"]["httpGet"]["path"]


def _env(c):
    return {v["name"]: v for v in c.get("env", [])}


def _check_var_refs(c):
    """$(VAR) in env values refers to a variable defined above it; in args/command, to one
    of the container's variables (otherwise Kubernetes leaves the text as it is)."""
    seen = set()
    for v in c.get("env", []):
        for ref in re.findall(r"\$\((\w+)\)", v.get("value", "")):
            assert ref in seen, (c["name"], v["name"], ref)
        seen.add(v["name"])
    for a in c.get("args", []) + c.get("command", []):
        for ref in re.findall(r"\$\((\w+)\)", a):
            assert ref in seen, (c["name"], a, ref)


def _field_ref(c, var):
    return _env(c)[var]["valueFrom"]["fieldRef"]["fieldPath"]


def _stable_names(cluster, sts_name, scheme, port_name):
    """The URL of every pod of a StatefulSet by its stable DNS name, as the other pods
    write it (namespace through $(POD_NAMESPACE))."""
    sts = _sts(cluster, sts_name)
    port = {p["name"]: p["containerPort"] for p in _container(sts)["ports"]}[port_name]
    return ["%s://%s-%d.%s.$(POD_NAMESPACE).svc.cluster.local:%d"
            % (scheme, sts_name, i, sts["spec"]["serviceName"], port) for i in range(sts["spec"]["replicas"])]


def _quiverd_options():
    """{long option: takes a value} from quiverd's getopt_long table (server/main.c)."""
    with open(os.path.join(ROOT, "server", "main.c")) as f:
        src = f.read()
    opts = dict(re.findall(r'\{"([a-z0-9-]+)",\s*(required_argument|no_argument)', src))
    assert "cluster-etcd" in opts and "advertise" in opts
    return {k: v == "required_argument" for k, v in opts.items()}


def test_quiverd_flags(cluster):
    sts = _sts(cluster, "quiverd")
    c = _container(sts)
    _check_var_refs(c)
    opts = _quiverd_options()
    args = {}
    for a in c["args"]:
        m = re.fullmatch(r"--([a-z0-9-]+)(=(.*))?", a)
        assert m and m.group(1) in opts, "quiverd has no option %r" % a
        assert opts[m.group(1)] == (m.group(2) is not None), a
        args[m.group(1)] = m.group(3)
    assert _field_ref(c, "POD_NAME") == "metadata.name"
    assert _field_ref(c, "POD_NAMESPACE") == "metadata.namespace"
    # node id = pod name; each pod advertises its stable name behind the headless Service
    assert args["node-id"] == "$(POD_NAME)"
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["grpc"]
    assert args["listen"] == "0.0.0.0:%d" % port
    assert args["advertise"] == "$(POD_NAME).%s.$(POD_NAMESPACE).svc.cluster.local:%d" % (
        sts["spec"]["serviceName"], port)
    assert args["cluster-etcd"].split(",") == _stable_names(cluster, "etcd", "http", "client")
    assert args["cluster-nats"].split(",") == _stable_names(cluster, "nats", "nats", "client")
    assert "no-shards" not in args and "insecure-no-auth" not in args
    # the key files are the Secret's, mounted whole (not subPath: a changed Secret arrives)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    secret = cluster["objs"][("Secret", "quiver-keys")]
    for flag in ("auth-keys", "cluster-key-file"):
        d, f = os.path.split(args[flag])
        m = mounts[d]
        assert m["readOnly"] is True and "subPath" not in m
        assert vols[m["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
        assert f in secret["stringData"], flag
    assert args["data"] == mounts["/data"]["mountPath"] and mounts["/data"]["name"] == "data"
    metrics = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert args["metrics-listen"] == "0.0.0.0:%d" % metrics
    ann = sts["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(metrics)


def test_the_secret_is_a_placeholder_quiverd_refuses(cluster):
    s = cluster["objs"][("Secret", "quiver-keys")]["stringData"]
    lines = [ln for ln in s["api-keys"].splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    # not a SHA-256: quiverd will not start on it by mistake
    assert lines and all(not re.fullmatch(r"[0-9a-f]{64}", ln.split()[0]) for ln in lines)
    assert "REPLACE" in s["cluster-key"]


def test_etcd(cluster):
    c = _container(_sts(cluster, "etcd"))
    _check_var_refs(c)
    env = {k: v.get("value") for k, v in _env(c).items()}
    etcd = qt.require_tool("etcd", "etcd-server")
    out = subprocess.run([etcd, "--help"], capture_output=True, text=True, timeout=30)
    flags = set(re.findall(r"^\s+--([a-z0-9-]+)", out.stdout + out.stderr, re.M))
    assert "initial-cluster" in flags
    for k in env:
        if k.startswith("ETCD_"):
            assert k[5:].lower().replace("_", "-") in flags, "etcd has no flag for %s" % k
    assert _field_ref(c, "POD_NAME") == "metadata.name"
    assert env["ETCD_NAME"] == "$(POD_NAME)"
    peers = _stable_names(cluster, "etcd", "http", "peer")
    assert env["ETCD_INITIAL_CLUSTER"].split(",") == ["etcd-%d=%s" % (i, u) for i, u in enumerate(peers)]
    me = "http://$(POD_NAME).etcd.$(POD_NAMESPACE).svc.cluster.local"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == me + ":2380"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == me + ":2379"
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_DATA_DIR"].startswith(c["volumeMounts"][0]["mountPath"] + "/")
    assert env["ETCD_LISTEN_METRICS_URLS"].endswith(":%d" % {p["name"]: p["containerPort"]
                                                            for p in c["ports"]}["metrics"])


def _nats_conf(cluster):
    return cluster["objs"][("ConfigMap", "nats-config")]["data"]["nats.conf"]


def test_nats_config(cluster, tmp_path):
    conf = _nats_conf(cluster)
    sts = _sts(cluster, "nats")
    c = _container(sts)
    _check_var_refs(c)
    assert re.search(r"^\s*max_payload:\s*8MB\s*$", conf, re.M)
    assert re.search(r"^\s*server_name:\s*\$POD_NAME\b", conf, re.M)
    assert _field_ref(c, "POD_NAME") == "metadata.name"
    # fsync before acknowledging: set, with the comment that it needs NATS >= 2.10
    m = re.search(r"((?:^[ \t]*#.*\n)+)^[ \t]*sync_interval:\s*always\s*$", conf, re.M)
    assert m and "2.10" in m.group(1) and "2.9" in m.group(1), "sync_interval: always and its comment"
    assert re.fullmatch(r"nats:2\.(1[0-9]|[2-9][0-9])\.\d+(-alpine)?", c["image"]), c["image"]
    # routes: every pod by its stable name in this namespace
    routes = re.search(r"routes:\s*\[(.*?)\]", conf, re.S).group(1).split()
    cport = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert routes == ["nats://nats-%d.%s.%s.svc.cluster.local:%d" % (i, sts["spec"]["serviceName"], cluster["ns"],
                                                                    cport["cluster"])
                      for i in range(sts["spec"]["replicas"])]
    assert re.search(r"^\s*port:\s*%d\b" % cport["client"], conf, re.M)
    assert re.search(r"^\s*http_port:\s*%d\b" % cport["monitor"], conf, re.M)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert re.search(r'store_dir:\s*"%s"' % re.escape(mounts["data"]), conf)
    pid = re.search(r'pid_file:\s*"([^"]+)"', conf).group(1)
    assert os.path.dirname(pid) == mounts["pid"]
    assert c["lifecycle"]["preStop"]["exec"]["command"][-1] == "ldm=" + pid
    assert c["command"][-1] == os.path.join(mounts["config"], "nats.conf")
    # the Debian nats-server (2.9) checks the rest of the file (-t: test the configuration)
    nats = qt.require_tool("nats-server", "nats-server")
    f = tmp_path / "nats.conf"
    f.write_text("".join(ln for ln in conf.splitlines(True) if "sync_interval" not in ln))
    r = subprocess.run([nats, "-c", str(f), "-t"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, POD_NAME="nats-0"))
    assert r.returncode == 0, r.stdout + r.stderr
    # ...and is no rubber stamp
    f.write_text(f.read_text().replace("max_payload", "max_paylod"))
    r = subprocess.run([nats, "-c", str(f), "-t"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, POD_NAME="nats-0"))
    assert r.returncode != 0 and "max_paylod" in r.stdout + r.stderr
