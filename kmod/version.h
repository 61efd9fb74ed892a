/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _IDGATE_VERSION_H
#define _IDGATE_VERSION_H

#define IDGATE_MODULE_VERSION "0.1.0"

#endif
