/*
 * The MPI C API for Swift (Open MPI, found by pkg-config as ompi-c). Open MPI spells its
 * handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) as macros over global objects, which Swift
 * cannot import: each is returned by a static inline function instead.
 */
#ifndef NERVE_CMPI_SHIM_H
#define NERVE_CMPI_SHIM_H

#include <mpi.h>

static inline MPI_Comm nerve_mpi_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype nerve_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype nerve_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype nerve_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype nerve_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Op nerve_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op nerve_mpi_max(void) { return MPI_MAX; }
static inline MPI_Request nerve_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *nerve_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *nerve_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline int nerve_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int nerve_mpi_any_tag(void) { return MPI_ANY_TAG; }
static inline MPI_Errhandler nerve_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }

#endif
