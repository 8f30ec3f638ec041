// Hadoop's raw local file system, setting permissions in the JVM (java.nio) instead of a `chmod` process.
//
// Without Hadoop's native library (pyspark ships none), RawLocalFileSystem.setPermission runs `chmod` for every
// file and folder Hadoop creates: about 4 ms each on a 2-core machine, two per daily partition of the curated table.
// Only the local runtime uses this class (dropzone/local/localfs.py compiles it); EMR writes to s3://.
package dropzone.local;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

public class NioLocalFileSystem extends RawLocalFileSystem {
  // Bit i of a POSIX mode, from the lowest: others x/w/r, group x/w/r, owner x/w/r.
  private static final PosixFilePermission[] MODE_BITS = {
    PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
    PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
    PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
  };

  @Override
  public void setPermission(Path p, FsPermission permission) throws IOException {
    short mode = permission.toShort();
    Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
    for (int i = 0; i < MODE_BITS.length; i++) {
      if ((mode & (1 << i)) != 0) {
        set.add(MODE_BITS[i]);
      }
    }
    Files.setPosixFilePermissions(pathToFile(p).toPath(), set);
  }
}
