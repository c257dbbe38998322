/* Extracts every ```c block of the given Markdown files into a CMake project
 * that builds each one against an installed Loom and runs it as a ctest test.
 *
 *   doc_snippets OUT_DIR ROOT FILE.md...   (FILE paths relative to ROOT)
 *
 * A block that defines main() is a whole program. Any other block is a
 * fragment: its #include lines go to file scope and the rest becomes the body
 * of a function that main() calls inside a scope; the run fails when the body
 * returns non-zero or leaves an error recorded (loom_last_status()).
 * An HTML comment just before the fence, invisible on a rendered page, gives
 * what a fragment needs:
 *
 *   <!-- snippet
 *   file: static loom_tensor *model_forward(loom_tensor *x) { return x; }
 *   before: loom_tensor *x = loom_randn(LOOM_SHAPE(4, 10), LOOM_F32, loom_cpu());
 *   norun: the reason it is compiled and linked but not run
 *   top
 *   -->
 *
 * `file:` lines go to file scope before the body, `before:` lines open the
 * body, `top` puts the whole block at file scope (declarations; compiled and
 * linked, not run). #line directives point compiler errors at the Markdown
 * file and line. Prints one line per block; exit status 1 on a malformed
 * comment or an unclosed block. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 4096
#define MAX_LINES 400

typedef struct {
  char *file[MAX_LINES], *before[MAX_LINES], *norun;
  int n_file, n_before, top;
} directives;

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (!d) {
    fprintf(stderr, "doc_snippets: out of memory\n");
    exit(1);
  }
  return memcpy(d, s, n);
}

static void clear_directives(directives *d) {
  for (int i = 0; i < d->n_file; i++) free(d->file[i]);
  for (int i = 0; i < d->n_before; i++) free(d->before[i]);
  free(d->norun);
  memset(d, 0, sizeof *d);
}

static const char *skip_space(const char *s) {
  while (*s == ' ' || *s == '\t') s++;
  return s;
}

static void chomp(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
}

/* One directive line of a snippet comment; 0 when understood. */
static int parse_directive(directives *d, const char *text) {
  char line[MAX_LINE];
  snprintf(line, sizeof line, "%s", skip_space(text));
  size_t n = strlen(line);
  while (n && (line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
  if (!*line) return 0;
  if (!strcmp(line, "top")) return d->top = 1, 0;
  if (!strncmp(line, "file:", 5) && d->n_file < MAX_LINES) return d->file[d->n_file++] = dup_str(skip_space(line + 5)), 0;
  if (!strncmp(line, "before:", 7) && d->n_before < MAX_LINES)
    return d->before[d->n_before++] = dup_str(skip_space(line + 7)), 0;
  if (!strncmp(line, "norun:", 6) && !d->norun && *skip_space(line + 6)) return d->norun = dup_str(skip_space(line + 6)), 0;
  return 1;
}

/* A C identifier made of the path and the line: docs/nn.md:45 -> docs_nn_md_45. */
static void target_name(const char *path, int line, char *out, size_t size) {
  size_t k = 0;
  for (const char *p = path; *p && k + 1 < size; p++) out[k++] = isalnum((unsigned char)*p) ? *p : '_';
  snprintf(out + k, size - k, "_%d", line);
}

typedef struct {
  char *text[MAX_LINES];
  int n, first_line;
} block;

static int has_main(const block *b) {
  for (int i = 0; i < b->n; i++)
    if (strstr(b->text[i], "int main(")) return 1;
  return 0;
}

static int is_include(const char *line) {
  line = skip_space(line);
  return !strncmp(line, "#include", 8);
}

static void write_lines(FILE *f, const block *b, int includes, const char *md) {
  for (int i = 0; i < b->n; i++) {
    if (is_include(b->text[i]) != includes) continue;
    fprintf(f, "#line %d \"%s\"\n%s\n", b->first_line + i, md, b->text[i]);
  }
}

/* Writes OUT/src/NAME.c for one block and its lines in OUT/CMakeLists.txt. */
static int write_block(const char *out, FILE *cm, const char *md, const block *b, const directives *d) {
  const int at = b->first_line - 1; /* the fence's line: names the block */
  char name[512], path[1024];
  target_name(md, at, name, sizeof name);
  snprintf(path, sizeof path, "%s/src/%s.c", out, name);
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "doc_snippets: cannot write %s\n", path);
    return 1;
  }
  const char *kind;
  int program = has_main(b), run = !d->top && !d->norun;
  if (program) {
    kind = "program";
    write_lines(f, b, 1, md);
    write_lines(f, b, 0, md);
  } else {
    kind = d->top ? "declarations" : "fragment";
    fprintf(f, "#include <loom/loom.h>\n#include <math.h>\n#include <stdbool.h>\n#include <stdio.h>\n"
               "#include <stdlib.h>\n#include <string.h>\n");
    write_lines(f, b, 1, md);
    if (d->n_file) fprintf(f, "#line 1 \"%s:%d snippet comment\"\n", md, at);
    for (int i = 0; i < d->n_file; i++) fprintf(f, "%s\n", d->file[i]);
    if (d->top) {
      write_lines(f, b, 0, md);
      fprintf(f, "int main(void) { return 0; }\n");
    } else {
      fprintf(f, "static int snippet(void) {\n");
      if (d->n_before) fprintf(f, "#line 1 \"%s:%d snippet comment\"\n", md, at);
      for (int i = 0; i < d->n_before; i++) fprintf(f, "%s\n", d->before[i]);
      write_lines(f, b, 0, md);
      fprintf(f, "#line 1 \"snippet wrapper\"\n  return 0;\n}\n"
                 "int main(void) {\n  loom_manual_seed(1);\n  loom_scope_begin();\n  int rc = snippet();\n"
                 "  loom_scope_end();\n  if (rc != 0 || loom_last_status() != LOOM_OK) {\n"
                 "    fprintf(stderr, \"%s:%d: the snippet failed (returned %%d): %%s\\n\", rc, loom_last_error());\n"
                 "    return 1;\n  }\n  return 0;\n}\n",
              md, at);
    }
  }
  fclose(f);
  fprintf(cm, "add_executable(%s src/%s.c)\ntarget_link_libraries(%s PRIVATE Loom::loom)\n", name, name, name);
  fprintf(cm, "target_compile_options(%s PRIVATE -Wall -Werror -Wno-unused)\n", name);
  if (run) {
    fprintf(cm, "add_test(NAME %s:%d COMMAND %s WORKING_DIRECTORY ${CMAKE_BINARY_DIR}/run)\n", md, at,
            name);
    /* Fragments are excerpts: they need not free what they make. */
    if (!program) fprintf(cm, "set_tests_properties(%s:%d PROPERTIES ENVIRONMENT ASAN_OPTIONS=detect_leaks=0)\n", md,
                          at);
  }
  if (run) printf("%s:%d: %s, built and run\n", md, at, kind);
  else if (d->top) printf("%s:%d: %s, built\n", md, at, kind);
  else printf("%s:%d: %s, built, not run: %s\n", md, at, kind, d->norun);
  return 0;
}

/* Reads one Markdown file; 0 when every block and comment was well formed. */
static int extract(const char *out, FILE *cm, const char *root, const char *md) {
  char path[2048], line[MAX_LINE];
  snprintf(path, sizeof path, "%s/%s", root, md);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "doc_snippets: cannot read %s\n", path);
    return 1;
  }
  directives d = {0};
  block b = {0};
  int lineno = 0, in_comment = 0, in_block = 0, pending = 0, bad = 0, fence_indent = 0, other_fence = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    chomp(line);
    const char *s = skip_space(line);
    if (in_block) {
      if (!strncmp(s, "```", 3)) {
        bad |= write_block(out, cm, md, &b, &d);
        for (int i = 0; i < b.n; i++) free(b.text[i]);
        memset(&b, 0, sizeof b);
        clear_directives(&d);
        in_block = pending = 0;
      } else if (b.n == MAX_LINES) {
        fprintf(stderr, "%s:%d: block longer than %d lines\n", md, lineno, MAX_LINES);
        bad = 1;
      } else {
        int k = 0;
        while (k < fence_indent && line[k] == ' ') k++;
        b.text[b.n++] = dup_str(line + k);
      }
      continue;
    }
    if (other_fence) {
      if (!strncmp(s, "```", 3)) other_fence = 0;
      continue;
    }
    if (in_comment) {
      char *end = strstr(line, "-->");
      if (end) *end = 0;
      if (parse_directive(&d, line)) {
        fprintf(stderr, "%s:%d: unknown snippet directive: %s\n", md, lineno, skip_space(line));
        bad = 1;
      }
      if (end) in_comment = 0, pending = 1;
      continue;
    }
    if (!strncmp(s, "<!-- snippet", 12)) {
      clear_directives(&d);
      char rest[MAX_LINE];
      snprintf(rest, sizeof rest, "%s", s + 12);
      char *end = strstr(rest, "-->");
      if (end) *end = 0;
      if (parse_directive(&d, rest)) {
        fprintf(stderr, "%s:%d: unknown snippet directive: %s\n", md, lineno, skip_space(rest));
        bad = 1;
      }
      if (end) pending = 1;
      else in_comment = 1;
      continue;
    }
    if (!strcmp(s, "```c")) {
      in_block = 1;
      fence_indent = (int)(s - line);
      b.first_line = lineno + 1;
      if (!pending) clear_directives(&d);
      continue;
    }
    if (!strncmp(s, "```", 3)) other_fence = 1;
    if (pending && *s) {
      fprintf(stderr, "%s:%d: a snippet comment must come just before a ```c block\n", md, lineno);
      bad = 1;
      pending = 0;
      clear_directives(&d);
    }
  }
  fclose(f);
  if (in_block || in_comment) {
    fprintf(stderr, "%s: unclosed %s at the end of the file\n", md, in_block ? "```c block" : "snippet comment");
    bad = 1;
  }
  for (int i = 0; i < b.n; i++) free(b.text[i]);
  clear_directives(&d);
  return bad;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: doc_snippets OUT_DIR ROOT FILE.md...\n");
    return 2;
  }
  char path[2048];
  snprintf(path, sizeof path, "%s/CMakeLists.txt", argv[1]);
  FILE *cm = fopen(path, "w");
  if (!cm) {
    fprintf(stderr, "doc_snippets: cannot write %s (does %s/src exist?)\n", path, argv[1]);
    return 1;
  }
  fprintf(cm, "# Generated by tests/snippets/extract.c: one program per C block of the docs.\n"
              "cmake_minimum_required(VERSION 3.25)\nproject(LoomDocSnippets LANGUAGES C)\n"
              "set(CMAKE_C_STANDARD 11)\nfind_package(Loom REQUIRED)\nenable_testing()\n"
              "file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/run)\n");
  int bad = 0;
  for (int i = 3; i < argc; i++) bad |= extract(argv[1], cm, argv[2], argv[i]);
  fclose(cm);
  return bad;
}
