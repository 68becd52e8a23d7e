/* libllama.so over prebuilt llama.cpp libraries (tools/setup_llamacpp.py compiles this file).
 *
 * llama-cpp-python loads llama_cpp/lib/libllama.so and looks every function it binds up in it.
 * This library links the prebuilt libllama and libggml (a lookup in it finds their functions:
 * dlsym searches a library's dependencies), and adds two things the prebuilt set lacks:
 *
 * - the CPU backend, loaded when this library is: a prebuilt build keeps each CPU variant in its
 *   own library (libggml-cpu-haswell.so, ...), which llama.cpp's programs load with
 *   ggml_backend_load_all(); llama-cpp-python never calls it, and a model then fails to load
 *   with "no backends are loaded";
 * - the functions the bindings bind that this llama.cpp release does not have (MISSING below,
 *   written by setup_llamacpp from the two lists): each stops the process with a message if it
 *   is ever called. deltaflow and llama-cpp-python's Llama call none of them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t ggml_backend_reg_count(void);
void ggml_backend_load_all_from_path(const char * dir_path);

__attribute__((constructor)) static void deltaflow_load_cpu_backend(void) {
    if (ggml_backend_reg_count() > 0) {
        return;
    }
    Dl_info info;
    char dir[PATH_MAX];
    if (!dladdr((void *) &deltaflow_load_cpu_backend, &info) || info.dli_fname == NULL ||
        strlen(info.dli_fname) >= sizeof dir) {
        return;
    }
    strcpy(dir, info.dli_fname);
    char * slash = strrchr(dir, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else {
        *slash = '\0';
    }
    /* the best CPU variant this machine runs, from the folder this library is in */
    ggml_backend_load_all_from_path(dir);
}

#define MISSING(name)                                                                         \
    void name(void) {                                                                         \
        fprintf(stderr, "deltaflow: llama.cpp's " #name " is not in the prebuilt llama.cpp "   \
                        "libraries (envs/llamacpp-prebuilt.txt); `make setup LLAMA_CPP=source` " \
                        "builds llama-cpp-python's own llama.cpp, which has it\n");            \
        abort();                                                                              \
    }
