"""Facts about the images the stack launches, defined once.

``IMAGE_ROOT_GIB`` is the root volume (GiB) of the GitLab image: ``gitlab-cfn
bake-ami`` builds the image with a root volume this large, so the image's
snapshot is this large, and EC2 refuses to launch it with a smaller root volume
(``InvalidBlockDeviceMapping: Volume of size <n>GB is smaller than snapshot``;
with a snapshot, VolumeSize may be equal to or larger than the snapshot size:
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_EbsBlockDevice.html).
Every launch from the GitLab image asks for at least this much: the app's
``AppRootVolumeSize`` has it as its minimum, the Gitaly server has it as its
root, and lint rule E9008 checks every template.
"""

IMAGE_ROOT_GIB = 30
# The stock Ubuntu image of the bastions has an 8 GiB snapshot.
UBUNTU_ROOT_GIB = 8
# Parameters that name the GitLab image: whatever launches from them launches the
# GitLab image (lint rule E9008).
# The servers of a Gitaly Cluster each have their own pinned image (Gitaly<n>AmiId, at
# most 9 servers: config gitaly.nodes).
GITLAB_IMAGE_PARAMETERS = ("GitLabAmiId", "GitalyAmiId", *(f"Gitaly{n}AmiId" for n in range(1, 10)))
