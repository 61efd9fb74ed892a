/* SPDX-License-Identifier: GPL-2.0 */
/* The misc device /dev/idgate and its ioctls (include/uapi/idgate.h). */
#ifndef _IDGATE_DEV_H
#define _IDGATE_DEV_H

int idgate_dev_init(void);
void idgate_dev_exit(void);

#endif
