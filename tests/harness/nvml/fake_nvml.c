/*
 * A stand-in libnvidia-ml.so.1 for tests on machines without an NVIDIA driver.
 *
 * Build: gcc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.1 fake_nvml.c
 *
 * It implements the NVML calls pynvml makes for shape detection, with the same signatures and
 * return codes as the real library, and answers from environment variables read at init:
 *
 *   FAKE_NVML_DEVICES        "NAME:MIB[:MAJOR.MINOR],..."  e.g. "NVIDIA H100 80GB HBM3:81559:9.0"
 *                            unset: init fails with NVML_ERROR_DRIVER_NOT_LOADED (no GPU node)
 *                            empty: init succeeds and reports zero devices
 *   FAKE_NVML_INIT_ERROR     an NVML return code that init returns instead of success
 *   FAKE_NVML_DRIVER_VERSION the driver version string (default "550.54.15")
 *   FAKE_NVML_UNSUPPORTED    comma-separated function names that answer NVML_ERROR_NOT_SUPPORTED
 *
 * Calls made before init (or after the last shutdown) answer NVML_ERROR_UNINITIALIZED, as the
 * real library does; fakeNvmlActiveInits() tells a test whether every init was shut down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_FUNCTION_NOT_FOUND 13
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25

#define MAX_DEVICES 64
#define NAME_SIZE 96

typedef struct {
    char name[NAME_SIZE];
    unsigned long long memory_bytes;
    int cc_major;
    int cc_minor;
    char uuid[NAME_SIZE];
} fake_device_t;

typedef fake_device_t *nvmlDevice_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

static fake_device_t devices[MAX_DEVICES];
static unsigned int device_count = 0;
static int active_inits = 0;

int fakeNvmlActiveInits(void) { return active_inits; }

static int unsupported(const char *function) {
    const char *list = getenv("FAKE_NVML_UNSUPPORTED");
    size_t length = strlen(function);
    const char *at;
    if (list == NULL) return 0;
    for (at = strstr(list, function); at != NULL; at = strstr(at + 1, function)) {
        int starts = (at == list || at[-1] == ',');
        int ends = (at[length] == '\0' || at[length] == ',');
        if (starts && ends) return 1;
    }
    return 0;
}

#define GUARD(function)                                              \
    do {                                                             \
        if (active_inits == 0) return NVML_ERROR_UNINITIALIZED;      \
        if (unsupported(function)) return NVML_ERROR_NOT_SUPPORTED;  \
    } while (0)

static void parse_devices(const char *spec) {
    char buffer[8192];
    char *entry, *save = NULL;
    device_count = 0;
    strncpy(buffer, spec, sizeof(buffer) - 1);
    buffer[sizeof(buffer) - 1] = '\0';
    for (entry = strtok_r(buffer, ",", &save); entry != NULL && device_count < MAX_DEVICES;
         entry = strtok_r(NULL, ",", &save)) {
        fake_device_t *device = &devices[device_count];
        char *memory = strchr(entry, ':');
        char *capability = NULL;
        memset(device, 0, sizeof(*device));
        if (memory != NULL) {
            *memory++ = '\0';
            capability = strchr(memory, ':');
            if (capability != NULL) *capability++ = '\0';
            device->memory_bytes = strtoull(memory, NULL, 10) * 1024ULL * 1024ULL;
        }
        if (capability != NULL) sscanf(capability, "%d.%d", &device->cc_major, &device->cc_minor);
        strncpy(device->name, entry, NAME_SIZE - 1);
        snprintf(device->uuid, NAME_SIZE, "GPU-fa4e0000-0000-0000-0000-%012u", device_count);
        device_count++;
    }
}

static nvmlReturn_t init(void) {
    const char *error = getenv("FAKE_NVML_INIT_ERROR");
    const char *spec = getenv("FAKE_NVML_DEVICES");
    if (error != NULL && *error != '\0') return (nvmlReturn_t)atoi(error);
    if (spec == NULL) return NVML_ERROR_DRIVER_NOT_LOADED;
    if (active_inits == 0) parse_devices(spec);
    active_inits++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return init(); }
nvmlReturn_t nvmlInit_v2(void) { return init(); }
nvmlReturn_t nvmlInit(void) { return init(); }

nvmlReturn_t nvmlShutdown(void) {
    if (active_inits == 0) return NVML_ERROR_UNINITIALIZED;
    active_inits--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
        case NVML_SUCCESS: return "Success";
        case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
        case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
        case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
        case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
        case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
        default: return "Unknown Error";
    }
}

static nvmlReturn_t copy_text(const char *text, char *out, unsigned int length) {
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(text) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, text);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    const char *text = getenv("FAKE_NVML_DRIVER_VERSION");
    GUARD("nvmlSystemGetDriverVersion");
    return copy_text(text != NULL ? text : "550.54.15", version, length);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    GUARD("nvmlDeviceGetCount_v2");
    if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *count = device_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    GUARD("nvmlDeviceGetHandleByIndex_v2");
    if (device == NULL || index >= device_count) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

static int valid(nvmlDevice_t device) {
    return device != NULL && device >= devices && device < devices + device_count;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    GUARD("nvmlDeviceGetName");
    if (!valid(device)) return NVML_ERROR_INVALID_ARGUMENT;
    return copy_text(device->name, name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    GUARD("nvmlDeviceGetUUID");
    if (!valid(device)) return NVML_ERROR_INVALID_ARGUMENT;
    return copy_text(device->uuid, uuid, length);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    GUARD("nvmlDeviceGetMemoryInfo");
    if (!valid(device) || memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = device->memory_bytes;
    memory->used = device->memory_bytes / 100;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    GUARD("nvmlDeviceGetMemoryInfo_v2");
    if (!valid(device) || memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != 0x02000028) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory->total = device->memory_bytes;
    memory->reserved = device->memory_bytes / 200;
    memory->used = device->memory_bytes / 100;
    memory->free = memory->total - memory->reserved - memory->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor) {
    GUARD("nvmlDeviceGetCudaComputeCapability");
    if (!valid(device) || major == NULL || minor == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->cc_major == 0) return NVML_ERROR_NOT_SUPPORTED;
    *major = device->cc_major;
    *minor = device->cc_minor;
    return NVML_SUCCESS;
}
