/*
 * Server reflection (grpc.reflection.v1alpha and v1, wire-identical): answers
 * list_services, file_containing_symbol and file_by_filename from the
 * descriptor set embedded at build time, so that generic gRPC tools discover
 * the API without the .proto files. Adapted from the tested example in
 * shared/grpc-core-example.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descset.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "mini_descriptor.pb-c.h"
#include "services.h"

typedef struct {
  const char *name;
  ProtobufCBinaryData raw;
  int *deps;
  size_t ndeps;
} rfile;
typedef struct {
  char *sym;
  int file;
} rsym;
static Mini__FDSet *g_fdset;
static rfile *g_rfiles;
static size_t g_nrfiles;
static rsym *g_rsyms;
static size_t g_nrsyms, g_capsyms;
static char **g_services;
static Mini__FDProto **g_fps;
static size_t g_nservices;

static const char *add_sym(const char *prefix, const char *name) {
  if (g_nrsyms == g_capsyms) {
    g_capsyms = g_capsyms ? 2 * g_capsyms : 64;
    g_rsyms = realloc(g_rsyms, g_capsyms * sizeof *g_rsyms);
  }
  size_t l = strlen(prefix) + strlen(name) + 2;
  char *s = malloc(l);
  snprintf(s, l, "%s%s%s", prefix, prefix[0] ? "." : "", name);
  g_rsyms[g_nrsyms].sym = s;
  g_rsyms[g_nrsyms++].file = (int)g_nrfiles; /* file being indexed */
  return s;
}
static void add_msg_syms(const char *prefix, const Mini__MsgDesc *m) {
  const char *full = add_sym(prefix, m->name);
  for (size_t i = 0; i < m->n_enum_type; i++) add_sym(full, m->enum_type[i]->name);
  for (size_t i = 0; i < m->n_nested_type; i++) add_msg_syms(full, m->nested_type[i]);
}
/* Index the embedded FileDescriptorSet (protoc --include_imports
 * --descriptor_set_out): raw FileDescriptorProto bytes per file, symbol ->
 * file table, dependency graph, service list. */
int reflection_init(void) {
  g_fdset = mini__fdset__unpack(NULL, descset_bin_len, descset_bin);
  if (!g_fdset) return -1;
  g_rfiles = calloc(g_fdset->n_file, sizeof *g_rfiles);
  Mini__FDProto **fps = calloc(g_fdset->n_file, sizeof *fps);
  for (size_t i = 0; i < g_fdset->n_file; i++) {
    Mini__FDProto *fp = mini__fdproto__unpack(NULL, g_fdset->file[i].len, g_fdset->file[i].data);
    if (!fp) return -1;
    fps[i] = fp;
    g_nrfiles = i;
    g_rfiles[i].name = fp->name;
    g_rfiles[i].raw = g_fdset->file[i];
    const char *pkg = fp->package ? fp->package : "";
    for (size_t j = 0; j < fp->n_message_type; j++) add_msg_syms(pkg, fp->message_type[j]);
    for (size_t j = 0; j < fp->n_enum_type; j++) add_sym(pkg, fp->enum_type[j]->name);
    for (size_t j = 0; j < fp->n_service; j++) {
      const char *svc = add_sym(pkg, fp->service[j]->name);
      g_services = realloc(g_services, (g_nservices + 1) * sizeof *g_services);
      g_services[g_nservices++] = (char *)svc;
      for (size_t k = 0; k < fp->service[j]->n_method; k++)
        add_sym(svc, fp->service[j]->method[k]->name);
    }
  }
  g_nrfiles = g_fdset->n_file;
  for (size_t i = 0; i < g_nrfiles; i++) { /* resolve dependencies by name */
    g_rfiles[i].deps = calloc(fps[i]->n_dependency + 1, sizeof(int));
    for (size_t d = 0; d < fps[i]->n_dependency; d++)
      for (size_t k = 0; k < g_nrfiles; k++)
        if (strcmp(g_rfiles[k].name, fps[i]->dependency[d]) == 0)
          g_rfiles[i].deps[g_rfiles[i].ndeps++] = (int)k;
  }
  g_fps = fps; /* names point into the unpacked FDProtos: keep them */
  return 0;
}
void reflection_free(void) {
  for (size_t i = 0; i < g_nrfiles; i++) {
    free(g_rfiles[i].deps);
    mini__fdproto__free_unpacked(g_fps[i], NULL);
  }
  for (size_t i = 0; i < g_nrsyms; i++) free(g_rsyms[i].sym);
  free(g_fps);
  free(g_rfiles);
  free(g_rsyms);
  free(g_services);
  mini__fdset__free_unpacked(g_fdset, NULL);
}
static void collect_file(int f, int *seen, ProtobufCBinaryData *out, size_t *n) {
  if (seen[f]) return;
  seen[f] = 1;
  out[(*n)++] = g_rfiles[f].raw; /* requested file first, then its deps */
  for (size_t i = 0; i < g_rfiles[f].ndeps; i++) collect_file(g_rfiles[f].deps[i], seen, out, n);
}
void reflection_start(rpc *r) { rpc_start_stream(r); }
void reflection_step(rpc *r, int ok) {
  if (!ok) return;
  if (r->recv_bb == NULL) { /* client done */
    rpc_finish(r, NULL, GRPC_STATUS_OK, NULL);
    return;
  }
  Grpc__Reflection__V1alpha__ServerReflectionRequest *req =
      (Grpc__Reflection__V1alpha__ServerReflectionRequest *)rpc_recv_unpack(r, NULL);
  if (!req) {
    rpc_finish(r, NULL, GRPC_STATUS_INVALID_ARGUMENT, "bad ServerReflectionRequest");
    return;
  }
  Grpc__Reflection__V1alpha__ServerReflectionResponse rep =
      GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__FileDescriptorResponse fdr =
      GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ListServiceResponse lsr =
      GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ErrorResponse err = GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ServiceResponse *svcs = calloc(g_nservices, sizeof *svcs);
  Grpc__Reflection__V1alpha__ServiceResponse **svcp = calloc(g_nservices, sizeof *svcp);
  ProtobufCBinaryData *files = calloc(g_nrfiles, sizeof *files);
  int *seen = calloc(g_nrfiles, sizeof *seen);
  rep.valid_host = req->host;
  rep.original_request = req;
  int file = -1;
  switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
      for (size_t i = 0; i < g_nservices; i++) {
        grpc__reflection__v1alpha__service_response__init(&svcs[i]);
        svcs[i].name = g_services[i];
        svcp[i] = &svcs[i];
      }
      lsr.n_service = g_nservices;
      lsr.service = svcp;
      rep.message_response_case =
          GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
      rep.list_services_response = &lsr;
      break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
      for (size_t i = 0; i < g_nrfiles; i++)
        if (strcmp(g_rfiles[i].name, req->file_by_filename) == 0) file = (int)i;
      goto file_reply;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
      for (size_t i = 0; i < g_nrsyms; i++)
        if (strcmp(g_rsyms[i].sym, req->file_containing_symbol) == 0) file = g_rsyms[i].file;
    file_reply:
      if (file >= 0) {
        collect_file(file, seen, files, &fdr.n_file_descriptor_proto);
        fdr.file_descriptor_proto = files;
        rep.message_response_case =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        rep.file_descriptor_response = &fdr;
      } else {
        err.error_code = GRPC_STATUS_NOT_FOUND;
        err.error_message = "not found";
        rep.message_response_case =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        rep.error_response = &err;
      }
      break;
    default: /* extensions: none in this server */
      err.error_code = GRPC_STATUS_UNIMPLEMENTED;
      err.error_message = "extensions not supported";
      rep.message_response_case =
          GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
      rep.error_response = &err;
  }
  /* packed now, so the locals may go away after */
  rpc_send_recv(r, &rep.base);
  free(svcs);
  free(svcp);
  free(files);
  free(seen);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

