// MPI for Swift: MPI_COMM_WORLD, the datatypes and operations are macros (or addresses of globals)
// that Swift cannot import, so static inline accessors expose them.
#include <mpi.h>

static inline MPI_Comm pt_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype pt_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype pt_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype pt_mpi_long_long(void) { return MPI_LONG_LONG; }
static inline MPI_Datatype pt_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op pt_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op pt_mpi_max(void) { return MPI_MAX; }
static inline int pt_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int pt_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int pt_mpi_success(void) { return MPI_SUCCESS; }
static inline void *pt_mpi_in_place(void) { return MPI_IN_PLACE; }
// Non-blocking point-to-point (the sharded gradient exchange).
static inline MPI_Request pt_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *pt_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
// The communicator's largest message tag (the MPI_TAG_UB attribute; at least 32767 by the standard).
static inline int pt_mpi_tag_upper_bound(MPI_Comm comm) {
    int *value = 0, flag = 0;
    MPI_Comm_get_attr(comm, MPI_TAG_UB, &value, &flag);
    return flag && value ? *value : 32767;
}
